/*
 * Energy attribution from scheduler events: on every sched_switch the stint of the task that is
 * switching out (still `current` here) is charged to it (see stint_core for which clock), keyed
 * by (cgroup v2 id, tgid), in a per-CPU LRU hash, so the TS side gets on-CPU ns per workload per
 * CPU. The idle task (pid 0) is counted apart: idle power is reported, never spread over workloads.
 * Three flavours; the controller loads exactly one (and creates only its per-thread map):
 *   - energy_switch_ts: tp_btf + task-local storage (`threads`). Stints are summed in the thread's
 *     own storage and reach `tasks` in batches (see on_switch_ts). The cheap one, made for the
 *     hook's cost on a pinned pipe ping-pong: 4.5% of the switch rate (95% CI 3.3–5.6%, 58 ns per
 *     run by kernel.bpf_stats; reports/20261130-095913-energy-host), where the hash flavour cost
 *     8.1% in the same bench (111 ns; reports/20261130-100604-energy-host) — most of what is
 *     left is the tp_btf dispatch itself (ARCHITECTURE.md, energy).
 *   - energy_switch_btf: tp_btf + the `charged` hash, every stint into `tasks` at once: kernels
 *     where task storage in tracing programs or bpf_map_lookup_percpu_elem (5.19) is missing.
 *   - energy_switch_tp: the classic tracepoint (no BTF task pointers) with the hash.
 * And one with nothing on sched_switch (`--hook iter`): energy_iter walks every thread's own runtime
 * at each sample and energy_task_free keeps a freed thread's last value (see there).
 */
#include "lab.h"
#include "energy.h"

/* set before load by the controller when it opened cycles/instructions perf events on every CPU */
const volatile bool use_counters = false;
/* task-storage flavour: a thread's pending stints are added to `tasks` once they reach this much */
const volatile __u64 flush_ns = 1000000;
/*
 * task-storage flavour: CLOCK_MONOTONIC (task->start_time's clock) when the controller loaded the
 * program. A thread started after it has run only while the hook could see it, so its first stint
 * is its whole sum_exec_runtime — not sum − prev_sum, which the scheduler resets without a switch
 * when it re-sets a running task (sched_setaffinity from `taskset -c`, a nice or cgroup change):
 * charged that way such a thread lost what ran before the reset (~2 ms of a taskset'd process,
 * controller/energy/energy.test.ts "task storage …", 4 failures in 5 runs before this). The exit
 * path resets it too: a process that ran its whole life in one stint (a quiet machine) was charged
 * the last ~30 µs of 300 ms in 8 of 60 runs of the hash flavour on the 6.18 host, where the only
 * switch it had was its last. A thread whose storage could not be created at a switch
 * (`storage_misses`, 0 in every run so far) has that stint charged at once as sum − prev_sum, and
 * again inside its whole sum when its storage does appear.
 * The hash flavours take the whole sum only where it fits the interval since the previous switch on
 * this CPU (the stint's bound, stint_core): a thread whose `charged` entry the LRU evicted comes back
 * as a first stint with a lifetime longer than that, and its whole sum would charge it twice (task
 * storage lives as long as the task). Such a thread gets the older rule, sum − prev_sum or the
 * interval; one whose earlier stints together were shorter than the bound's slack (an eighth of this
 * stint + 100 µs) is overcharged by at most that.
 */
const volatile __u64 born_after_ns = ~0ULL;

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

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ENERGY_MAX_THREADS);
	__type(key, __u64); /* the task_struct's address: a thread keeps it across exec, not its tid */
	__type(value, struct energy_thread);
} charged SEC(".maps");

/* the task-storage flavour's per-thread state (created by the controller only for that flavour) */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct energy_pending);
} threads SEC(".maps");

/* the iter flavour: threads the kernel freed since the controller's last read (see energy_task_free) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ENERGY_MAX_EXITED);
	__type(key, struct energy_exit_key);
	__type(value, struct energy_iter_task);
} exited SEC(".maps");

/*
 * How long did the task that is switching out run? ktime between two switches is wall time; the
 * scheduler charges tasks by its own clock (rq clock_task: no steal time, no IRQ time where that is
 * accounted apart) and measured ~1% less than ktime deltas on this lab's nested-virtualised host, so
 * the scheduler's se.sum_exec_runtime is what is charged: the same nanoseconds cpu.stat and
 * /proc/<pid>/stat are made of. The stint is sum_exec_runtime minus what this program already
 * charged the thread (`charged`, per task_struct), not minus se.prev_sum_exec_runtime: the latter is
 * rewritten by set_next_entity() whenever the scheduler re-sets a *running* task (cgroup move,
 * setscheduler/nice/affinity changes through put_prev/set_next) and is not kept at all by the RT/DL
 * classes, so a stint measured against it loses what ran before such a reset. A thread's first stint
 * (no entry yet: new thread, a reused task_struct, or LRU-evicted) is its whole sum when it was born
 * after load and that fits the time since the previous switch on this CPU (+ slack; see
 * born_after_ns), else sum − prev_sum within the same bound, else that interval (`ktime_fallbacks`).
 * Not covered: a thread born after load whose first switch-out comes after it exec'd from a
 * non-leader (de_thread without a wait: its leader already a zombie) carries its leader's start
 * time then, so its first stint is sum − prev_sum, which the exit path resets: such a thread that
 * ran its whole life in one stint is undercharged. Nothing in the task keeps its own birth after
 * that exec (the iter flavour has the same limit, controller/energy/iter.ts).
 * `resyncs` counts stints where the two differ, i.e. where prev_sum was reset.
 * sum − charged is charged in full even when it exceeds the ktime interval: it is exactly the runtime
 * the kernel added to the thread since this program last charged it, i.e. what cpu.stat and
 * /proc/<pid>/stat add (a missed switch-out would only move time to the next stint, not lose it).
 * It does exceed wall time in the TCG guests: the scheduler's clock (sched_clock → rq clock) and
 * ktime disagree over single stints there (6.1: 128 of 14.6k stints longer than their ktime
 * interval, by up to 16.5 ms; busy time by the scheduler 0.8% above ktime). Clipping those stints to
 * wall time, as an earlier version did, lost 0.3–1.1% of the I/O workload against cpu.stat
 * (reports/20261130-054932-energy-6.1, 20261130-044246-energy-6.1); charged in full it matches to
 * the nanosecond (reports/20261130-055621-energy-6.1). Such stints are counted (`over_wall`, by how
 * much in `over_wall_ns`, the largest in `over_wall_max_ns`).
 */
static __always_inline __u64 stint_core(__u64 *charged, __u64 start, unsigned int policy, __u64 sum, __u64 prev, __u64 wall, struct energy_cpu *c, __u64 *old, __u64 *over)
{
	__u64 bound = wall + wall / 8 + 100000;
	bool fair = policy == 0 /* NORMAL */ || policy == 3 /* BATCH */ || policy == 5 /* IDLE */;
	__u64 by_prev = fair && sum >= prev ? sum - prev : ~0ULL;
	*old = by_prev <= bound ? by_prev : wall;
	if (*charged && sum >= *charged) {
		__u64 d = sum - *charged;
		*charged = sum;
		if (by_prev != ~0ULL) {
			if (d > by_prev + 100000) {
				c->resyncs++;
				c->resync_lost_ns += d - by_prev;
			} else if (by_prev > d + 100000) {
				c->resyncs++;
				c->resync_over_ns += by_prev - d;
			}
		}
		if (d > bound) {
			c->over_wall++;
			c->over_wall_ns += d - wall;
			if (d - wall > c->over_wall_max_ns)
				c->over_wall_max_ns = d - wall;
			*over = d - wall;
		}
		return d;
	}
	*charged = sum;
	c->first_stints++;
	/* born after load, first seen now: its whole runtime if that fits the interval (see born_after_ns) */
	if (start >= born_after_ns && sum <= bound)
		return sum;
	if (by_prev <= bound)
		return by_prev;
	c->ktime_fallbacks++;
	return wall;
}

/*
 * hash flavours: `charged` keyed by the task_struct's address. Not by tid: a non-leader thread that
 * execs takes its leader's tid and start time (de_thread) while the old leader exits under the
 * thread's old tid, so by tid the exec'd thread came back as a first stint, and the exit path's
 * reset of prev_sum (sched_autogroup_exit_task → sched_move_task) left sum − prev_sum ≈ 0 when the
 * new program ran its whole life in one stint: 0.1 s of its 0.43 s went uncharged in 4 of 5 runs
 * (controller/energy/energy.test.ts, "a busy thread that execs …"). A start time that went back is
 * that exec (a reused task_struct belongs to a task born after its last owner).
 */
static __always_inline __u64 stint_of(__u64 task, __u64 start, unsigned int policy, __u64 sum, __u64 prev, __u64 wall, struct energy_cpu *c, __u64 *old, __u64 *over)
{
	struct energy_thread *th = bpf_map_lookup_elem(&charged, &task);
	if (th && th->start_ns >= start) {
		th->start_ns = start;
		return stint_core(&th->charged_ns, start, policy, sum, prev, wall, c, old, over);
	}
	struct energy_thread n = { .start_ns = start };
	__u64 d = stint_core(&n.charged_ns, start, policy, sum, prev, wall, c, old, over);
	bpf_map_update_elem(&charged, &task, &n, BPF_ANY);
	return d;
}

/* hash flavours. tp_btf: `prev` is a trusted BTF pointer, its fields read directly (no probe reads) */
static __always_inline __u64 stint_btf(struct task_struct *t, __u64 wall, struct energy_cpu *c, bool *exiting, __u64 *old, __u64 *over)
{
	*exiting = t->exit_state != 0;
	return stint_of((__u64)t, t->start_time, t->policy, t->se.sum_exec_runtime, t->se.prev_sum_exec_runtime, wall, c, old, over);
}

/* classic tracepoint: no task pointer in the context; read `current` with probe reads */
static __always_inline __u64 stint_current(__u64 wall, struct energy_cpu *c, bool *exiting, __u64 *old, __u64 *over)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	*exiting = BPF_CORE_READ(t, exit_state) != 0;
	return stint_of((__u64)t, BPF_CORE_READ(t, start_time), BPF_CORE_READ(t, policy), BPF_CORE_READ(t, se.sum_exec_runtime), BPF_CORE_READ(t, se.prev_sum_exec_runtime), wall, c, old, over);
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

/*
 * The clock between two switches on a CPU (idle time, the bound of a first stint, `over_wall`).
 * tp_btf reads the scheduler's own clock off the two tasks, no helper call: at sched_switch the
 * outgoing task's se.exec_start was just set to the rq's clock_task by update_curr() (dequeue or
 * put_prev), and the incoming one's by set_next_task() at pick — the same clock sum_exec_runtime
 * advances by. bpf_ktime_get_ns() and bpf_get_current_pid_tgid() together cost ~55 ns of a ~130 ns
 * program per switch on this lab's host (kernel.bpf_stats, program cut off stage by stage; exploratory, no stored run). The
 * idle task keeps no exec_start, so a switch into idle takes the outgoing task's. The classic
 * tracepoint has no task pointers and pays for ktime.
 */
/*
 * The name a process's entry carries: its thread-group leader's. The switching thread's own
 * ("V8Worker", "GC Thread#0") split one process into a series per thread name in the Prometheus
 * export and in `energy top` (review, session 60). Read only when the name is refreshed.
 */
static __always_inline void leader_comm(char *comm)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct task_struct *l = BPF_CORE_READ(t, group_leader);
	if (!l || bpf_probe_read_kernel_str(comm, ENERGY_COMM_LEN, (void *)l->comm) < 0)
		bpf_get_current_comm(comm, ENERGY_COMM_LEN);
}

static __always_inline __u64 switch_clock(struct task_struct *prev, struct task_struct *next)
{
	if (!prev)
		return bpf_ktime_get_ns();
	return next->pid ? next->se.exec_start : prev->se.exec_start;
}

static __always_inline void on_switch(struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
	if (!c)
		return;
	__u64 now = switch_clock(prev, next);
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
	__u64 d = now > last ? now - last : 0;
	/* tp_btf: prev is current, read directly rather than through a helper call */
	__u64 pid_tgid = prev ? (__u64)prev->tgid << 32 | (__u32)prev->pid : bpf_get_current_pid_tgid();
	if ((__u32)pid_tgid == 0) {
		c->idle_ns += d;
		c->idle_cycles += cyc;
		return;
	}
	c->busy_wall_ns += d;
	bool exiting = false;
	__u64 old = 0, over = 0;
	d = prev ? stint_btf(prev, d, c, &exiting, &old, &over) : stint_current(d, c, &exiting, &old, &over);
	c->busy_ns += d;
	c->flushed_ns += d; /* charged to `tasks` (or unattributed) below, at once */
	c->flushes++;
	c->busy_cycles += cyc;
	struct energy_key k = { .cgroup_id = bpf_get_current_cgroup_id(), .tgid = pid_tgid >> 32 };
	struct energy_task *t = bpf_map_lookup_elem(&tasks, &k);
	if (!t) {
		struct energy_task init = {};
		leader_comm(init.comm);
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
		leader_comm(t->comm);
	t->on_cpu_ns += d;
	t->by_prev_ns += old;
	t->over_wall_ns += over;
	t->switches++;
	if (exiting)
		t->exit_switches++;
	t->cycles += cyc;
	t->instructions += ins;
}

/* CO-RE: task_struct.state became __state in 5.14 */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return t->__state;
	return ((struct task_struct___pre514 *)t)->state;
}

#define TS_STOPPED 0x4 /* __TASK_STOPPED */
#define TS_TRACED 0x8  /* __TASK_TRACED */

/*
 * Add a thread's pending stints to `tasks` and to the per-CPU totals, in the slots of the CPU they
 * ran on (s->cpu). When the thread has moved (s->cpu is not the CPU running this) those are another
 * CPU's slots, which that CPU's flushes update too: every add here is atomic. Flushes are the rare
 * path (once per flush_ns of a thread's CPU time, or on stop, exit, cgroup move, migration); the
 * per-switch path touches only the thread's own storage.
 */
static __always_inline void flush(struct energy_pending *s, __u32 tgid, __u32 cpu, bool exiting)
{
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_percpu_elem(&cpus, &zero, s->cpu);
	if (!c)
		return; /* a CPU id beyond the map: cannot happen (nr_cpu_ids) */
	if (s->cpu != cpu)
		__sync_fetch_and_add(&c->remote_flushes, 1);
	struct energy_key k = { .cgroup_id = s->cgroup_id, .tgid = tgid };
	struct energy_task *t = bpf_map_lookup_percpu_elem(&tasks, &k, s->cpu);
	if (!t) {
		struct energy_task init = {};
		leader_comm(init.comm);
		if (bpf_map_update_elem(&tasks, &k, &init, BPF_NOEXIST) == 0)
			__sync_fetch_and_add(&c->new_keys, 1);
		t = bpf_map_lookup_percpu_elem(&tasks, &k, s->cpu);
	}
	__u64 ns = s->ns;
	if (t) {
		__sync_fetch_and_add(&t->on_cpu_ns, ns);
		__sync_fetch_and_add(&t->switches, s->switches);
		if (s->by_prev_ns)
			__sync_fetch_and_add(&t->by_prev_ns, s->by_prev_ns);
		if (use_counters) {
			__sync_fetch_and_add(&t->cycles, s->cycles);
			__sync_fetch_and_add(&t->instructions, s->instructions);
		}
		if (exiting)
			__sync_fetch_and_add(&t->exit_switches, 1);
		/* a fresh child carries its parent's name until exec: refresh it early and then now and then */
		if (s->cpu == cpu && (s->flushes < 4 || !(s->flushes & 15)))
			leader_comm(t->comm);
	} else {
		__sync_fetch_and_add(&c->unattributed_ns, ns);
	}
	__sync_fetch_and_add(&c->busy_ns, ns);
	__sync_fetch_and_add(&c->flushed_ns, ns);
	__sync_fetch_and_add(&c->switches, s->switches);
	__sync_fetch_and_add(&c->flushes, 1);
	if (use_counters)
		__sync_fetch_and_add(&c->busy_cycles, s->cycles);
	s->flushes++;
	s->ns = 0;
	s->by_prev_ns = 0;
	s->cycles = 0;
	s->instructions = 0;
	s->switches = 0;
}

/* hardware counters of this CPU since its previous switch (only with use_counters) */
static __always_inline void counters_now(bool idle, __u64 *cyc, __u64 *ins)
{
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
	if (!c)
		return;
	*cyc = counter_delta(&hw_cycles, &c->last_cycles, c);
	*ins = counter_delta(&hw_instructions, &c->last_instructions, c);
	if (idle)
		c->idle_cycles += *cyc;
}

/*
 * tp_btf with task-local storage (`threads`), the cheap flavour. Per switch it only reads the
 * outgoing thread's runtime and adds it to the thread's own storage: no hash lookup, no clock read,
 * no per-CPU slot. The pending stints go to `tasks` and the per-CPU totals (flush) only when
 *   - they reach flush_ns (1 ms), so a thread's pending time is bounded;
 *   - the thread stops (SIGSTOP, ptrace) or exits, so a stopped or reaped workload is complete in
 *     `tasks` (the scenario stops its workloads around each snapshot; the tests reap);
 *   - its css_set changes (a cgroup move: the pending time belongs to the old cgroup) or it
 *     switches out on another CPU (the pending time belongs to the old CPU's slots and energy).
 * The per-CPU totals therefore count flushed time (busy_ns = flushed_ns here), and `tasks` agrees
 * with them at every read: the node sum stays exact; what threads hold pending shows one flush
 * later (≤ flush_ns per thread). The stint is sum_exec_runtime − charged as in stint_core; the
 * first stint of a thread (its storage is new) is its whole sum for a thread started after load
 * (born_after_ns: all of it ran under the hook), else sum − prev_sum for the fair classes and
 * nothing for RT/DL ones (their prev_sum is stale; counted in ktime_fallbacks). The wall-clock diagnostics (idle_ns, busy_wall_ns, over_wall,
 * resyncs) need a clock read per switch and are kept by the hash flavours only.
 */
/* charge the stint that just ended to the thread's pending sum (s), flushing as on_switch_ts says */
static __always_inline void account(struct energy_pending *s, struct task_struct *prev, __u32 cpu, __u64 cyc, __u64 ins, bool at_once, bool tick)
{
	__u64 sum = prev->se.sum_exec_runtime;
	__u64 d;
	if (s->charged_ns && sum >= s->charged_ns) {
		d = sum - s->charged_ns;
	} else {
		/* first stint: see on_switch_ts and born_after_ns */
		__u64 prev_sum = prev->se.prev_sum_exec_runtime;
		unsigned int policy = prev->policy;
		bool fair = policy == 0 /* NORMAL */ || policy == 3 /* BATCH */ || policy == 5 /* IDLE */;
		/* not for the no-storage fallback (at_once): that thread's next storage would charge it again */
		if (!at_once && prev->start_time >= born_after_ns)
			d = sum;
		else
			d = fair && sum >= prev_sum ? sum - prev_sum : 0;
		__u32 zero = 0;
		struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
		if (c) {
			c->first_stints++;
			if (!fair)
				c->ktime_fallbacks++;
		}
	}
	s->charged_ns = sum;
	__u64 css = (__u64)prev->cgroups;
	/* (a tick adds time but no switch: pending time without switches is still the old CPU's) */
	if ((s->switches || s->ns || s->cycles) && (s->cpu != cpu || s->css != css))
		flush(s, prev->tgid, cpu, false);
	if (s->css != css) {
		s->css = css;
		s->cgroup_id = bpf_get_current_cgroup_id();
	}
	s->cpu = cpu;
	s->ns += d;
	if (!tick)
		s->switches++;
	if (use_counters) {
		s->cycles += cyc;
		s->instructions += ins;
	}
	/* (a tick between exit_notify and the final switch: that switch does the exit's flush) */
	bool exiting = !tick && prev->exit_state != 0;
	if (at_once || s->ns >= flush_ns || exiting || (!tick && (task_state(prev) & (TS_STOPPED | TS_TRACED))))
		flush(s, prev->tgid, cpu, exiting);
}

static __always_inline void on_switch_ts(struct task_struct *prev, struct task_struct *next)
{
	__u64 cyc = 0, ins = 0;
	bool idle = prev->pid == 0;
	if (use_counters)
		counters_now(idle, &cyc, &ins);
	if (idle)
		return;
	struct energy_pending *s = bpf_task_storage_get(&threads, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	__u32 cpu = bpf_get_smp_processor_id();
	if (s) {
		account(s, prev, cpu, cyc, ins, false, false);
		return;
	}
	/* no storage (no memory, or the helper refused to recurse): this stint alone, at once */
	struct energy_pending one = {};
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
	if (c)
		c->storage_misses++;
	account(&one, prev, cpu, cyc, ins, true, false);
}

/*
 * The running thread's stint so far, charged as its switch-out would charge it (task-storage
 * flavour). Without it a thread that runs long without a switch (a busy loop alone on its CPU; on a
 * quiet machine a burner runs its whole life in one stint) was charged only when it left the CPU:
 * a live view booked seconds of CPU into the interval where the stint ended (a pinned python
 * busy loop read 25.5-164.9% of a CPU per 1 s refresh of `energy top` without this, 98.1-100.7%
 * with it: reports/energy-top-tick-ab-20261208-001830). A cpu-clock perf event on
 * every CPU runs this at the controller's tick rate; it interrupts the thread on its own CPU, where
 * nothing else touches the thread's storage meanwhile (sched_switch runs with interrupts off).
 * se.sum_exec_runtime is as fresh as the scheduler's last update_curr() (its own tick at the latest).
 * Not for the hash flavours: their first-stint bound is the time since the CPU's last switch.
 */
SEC("perf_event")
int energy_tick(struct bpf_perf_event_data *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	if (!t->pid)
		return 0; /* idle */
	struct energy_pending *s = bpf_task_storage_get(&threads, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0; /* the switch-out charges all of it, and the counters since */
	__u64 cyc = 0, ins = 0;
	if (use_counters)
		counters_now(false, &cyc, &ins);
	account(s, t, bpf_get_smp_processor_id(), cyc, ins, false, true);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(energy_switch_ts, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	on_switch_ts(prev, next);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(energy_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	on_switch(prev, next);
	return 0;
}

/*
 * Does nothing: the bench attaches it alone, beside the real hook, to measure what any tp_btf
 * program on sched_switch costs (dispatch, recursion guard, the indirect call) — the floor under
 * the accounting's own cost. Never loaded with the collector.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(energy_switch_empty, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return 0;
}

SEC("tp/sched/sched_switch")
int energy_switch_tp(void *ctx)
{
	on_switch(NULL, NULL);
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

/*
 * The iter flavour: nothing runs at sched_switch. The kernel already keeps every thread's on-CPU
 * time (se.sum_exec_runtime, what cpu.stat and /proc/<pid>/stat are made of); the controller reads
 * it for every thread through this task iterator at each sample and charges the growth since the
 * thread's previous record to (its cgroup at the read, its tgid). The price: no per-CPU split (a
 * thread's time is not kept per CPU), no hardware counters (they are read at switches), and a
 * thread's time since the last read goes to the cgroup it is in at the read. A thread running on
 * another CPU during the walk shows its runtime as of that CPU's last scheduler update (a tick,
 * up to ~1 s on a nohz_full CPU); the rest comes with the next read. A thread is known by its
 * task_struct's address, not its tid: a non-leader thread that execs takes the leader's tid and start
 * time (de_thread) while the old leader exits under the exec'ing thread's old tid.
 * `leader`: the name is the thread group leader's (a live task's leader is alive); at free, the
 * thread's own (its leader may be freed already: RCU callbacks on two CPUs are not ordered).
 */
static __always_inline void iter_record(struct energy_iter_task *r, struct task_struct *t, const bool leader)
{
	r->task = (__u64)t;
	r->cgroup_id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	r->sum_ns = BPF_CORE_READ(t, se.sum_exec_runtime);
	r->start_ns = BPF_CORE_READ(t, start_time);
	r->tid = BPF_CORE_READ(t, pid);
	r->tgid = BPF_CORE_READ(t, tgid);
	struct task_struct *l = leader ? BPF_CORE_READ(t, group_leader) : NULL;
	bpf_probe_read_kernel_str(r->comm, sizeof(r->comm), l ? (void *)l->comm : (void *)t->comm);
}

SEC("iter/task")
int energy_iter(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	if (!t)
		return 0;
	struct energy_iter_task r = {};
	iter_record(&r, t, true);
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

/*
 * A thread's last record: sched_process_free runs from the RCU callback that drops the task's last
 * scheduler reference, after its final switch, so its runtime is final here (at sched_process_exit
 * the thread still runs to its last schedule). The thread has left the iterator's walk by then
 * (unhashed at release), so between the two the controller sees neither and waits for this.
 */
SEC("tp_btf/sched_process_free")
int BPF_PROG(energy_task_free, struct task_struct *p)
{
	struct energy_iter_task r = {};
	iter_record(&r, p, false);
	struct energy_exit_key k = { .task = r.task, .start_ns = r.start_ns };
	if (bpf_map_update_elem(&exited, &k, &r, BPF_ANY))
		return 0;
	__u32 zero = 0;
	struct energy_cpu *c = bpf_map_lookup_elem(&cpus, &zero);
	if (c)
		c->iter_exits++;
	return 0;
}

LAB_EXPORT(energy_key);
LAB_EXPORT(energy_task);
LAB_EXPORT(energy_cpu);
LAB_EXPORT(energy_freq);
LAB_EXPORT(energy_thread);
LAB_EXPORT(energy_pending);
LAB_EXPORT(energy_iter_task);
LAB_EXPORT(energy_exit_key);
