/*
 * Energy attribution from scheduler events: on every sched_switch the stint of the task that is
 * switching out (still `current` here) is charged to it (see stint_of for which clock), keyed
 * by (cgroup v2 id, tgid), in a per-CPU LRU hash, so the TS side gets on-CPU ns per workload per
 * CPU. The idle task (pid 0) is counted apart: idle power is reported, never spread over workloads.
 * Two attach flavours of the same code: tp_btf (cheaper, no tracepoint buffer) where it loads,
 * the classic tracepoint otherwise; the controller loads exactly one of them.
 */
#include "lab.h"
#include "energy.h"

/* set before load by the controller when it opened cycles/instructions perf events on every CPU */
const volatile bool use_counters = false;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, ENERGY_MAX_TASKS);
	__type(key, struct energy_key);
	__type(value, struct energy_task);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct energy_cpu);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENERGY_MAX_CPUS);
	__type(key, __u32);
	__type(value, struct energy_freq);
} freq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} hw_cycles SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} hw_instructions SEC(".maps");

/*
 * How long did the task that is switching out run? ktime between two switches is wall time; the
 * scheduler charges tasks by its own clock (rq clock_task: no steal time, no IRQ time where that is
 * accounted apart) and measured ~1% less than ktime deltas on this lab's nested-virtualised host. A
 * fair-class task's current stint is exactly se.sum_exec_runtime − se.prev_sum_exec_runtime
 * (set_next_entity() sets the latter when the task is picked; a re-pick without a switch does not),
 * so that is what is charged: the same nanoseconds cpu.stat and /proc/<pid>/stat are made of.
 * RT/deadline tasks (whose classes do not keep prev_sum_exec_runtime) and implausible values fall
 * back to the ktime interval, counted in `ktime_fallbacks`.
 */
static __always_inline __u64 stint_of(unsigned int policy, __u64 sum, __u64 prev, __u64 wall, struct energy_cpu *c)
{
	if (policy == 0 /* NORMAL */ || policy == 3 /* BATCH */ || policy == 5 /* IDLE */) {
		/* the stint cannot be longer than the time since the previous switch on this CPU (+ slack) */
		if (sum >= prev && sum - prev <= wall + wall / 8 + 100000)
			return sum - prev;
	}
	c->ktime_fallbacks++;
	return wall;
}

/* tp_btf: `prev` is a trusted BTF pointer, read directly (no helper calls in the hot path) */
static __always_inline __u64 stint_btf(struct task_struct *t, __u64 wall, struct energy_cpu *c)
{
	return stint_of(t->policy, t->se.sum_exec_runtime, t->se.prev_sum_exec_runtime, wall, c);
}

/* classic tracepoint: no task pointer in the context; read `current` with probe reads */
static __always_inline __u64 stint_current(__u64 wall, struct energy_cpu *c)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	return stint_of(BPF_CORE_READ(t, policy), BPF_CORE_READ(t, se.sum_exec_runtime), BPF_CORE_READ(t, se.prev_sum_exec_runtime), wall, c);
}

static __always_inline __u64 counter_delta(void *map, __u64 *last, struct energy_cpu *c)
{
	struct bpf_perf_event_value v = {};
	if (bpf_perf_event_read_value(map, BPF_F_CURRENT_CPU, &v, sizeof(v))) {
		c->counter_errors++;
		return 0;
	}
	__u64 d = *last ? v.counter - *last : 0;
	*last = v.counter;
	return d;
}

static __always_inline void on_switch(struct task_struct *prev)
{
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
	if (!c)
		return;
	__u64 now = bpf_ktime_get_ns();
	__u64 last = c->last_ns;
	c->last_ns = now;
	c->switches++;
	__u64 cyc = 0, ins = 0;
	if (use_counters) {
		cyc = counter_delta(&hw_cycles, &c->last_cycles, c);
		ins = counter_delta(&hw_instructions, &c->last_instructions, c);
	}
	if (!last)
		return; /* the first switch seen on this CPU opens the first interval */
	__u64 d = now - last;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)pid_tgid == 0) {
		c->idle_ns += d;
		c->idle_cycles += cyc;
		return;
	}
	c->busy_wall_ns += d;
	d = prev ? stint_btf(prev, d, c) : stint_current(d, c);
	c->busy_ns += d;
	c->busy_cycles += cyc;
	struct energy_key k = { .cgroup_id = bpf_get_current_cgroup_id(), .tgid = pid_tgid >> 32 };
	struct energy_task *t = bpf_map_lookup_elem(&tasks, &k);
	if (!t) {
		struct energy_task init = {};
		bpf_get_current_comm(init.comm, sizeof(init.comm));
		if (bpf_map_update_elem(&tasks, &k, &init, BPF_NOEXIST) == 0)
			c->new_keys++;
		t = bpf_map_lookup_elem(&tasks, &k);
		if (!t) {
			c->unattributed_ns += d;
			return;
		}
	}
	/* a fresh child carries its parent's name until exec: refresh it early and then now and then */
	if (t->switches < 4 || !(t->switches & 63))
		bpf_get_current_comm(t->comm, sizeof(t->comm));
	t->on_cpu_ns += d;
	t->switches++;
	t->cycles += cyc;
	t->instructions += ins;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(energy_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	on_switch(prev);
	return 0;
}

SEC("tp/sched/sched_switch")
int energy_switch_tp(void *ctx)
{
	on_switch(NULL);
	return 0;
}

SEC("tp/power/cpu_frequency")
int energy_cpu_frequency(struct trace_event_raw_cpu *ctx)
{
	__u32 cpu = ctx->cpu_id;
	struct energy_freq *f = bpf_map_lookup_elem(&freq, &cpu);
	if (f) {
		f->khz = ctx->state;
		f->events++;
	}
	return 0;
}

SEC("tp/power/cpu_idle")
int energy_cpu_idle(struct trace_event_raw_cpu *ctx)
{
	if (ctx->state == (__u32)-1)
		return 0; /* leaving idle */
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
	if (c)
		c->idle_events++;
	return 0;
}

LAB_EXPORT(energy_key);
LAB_EXPORT(energy_task);
LAB_EXPORT(energy_cpu);
LAB_EXPORT(energy_freq);
