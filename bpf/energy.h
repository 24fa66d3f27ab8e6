/*
 * Energy attribution: the layouts shared by energy.bpf.c and controller/energy (read from BTF).
 * BPF only measures time (and hardware counters where the machine has them); joules are computed
 * in user space, where the power source and the model live.
 */
#pragma once

#define ENERGY_MAX_TASKS 8192
#define ENERGY_MAX_CPUS 1024
#define ENERGY_COMM_LEN 16
#define ENERGY_MAX_THREADS 16384

/* one workload on one CPU: a process (tgid) in a cgroup (v2 id) */
struct energy_key {
	__u64 cgroup_id;
	__u32 tgid;
	__u32 pad;
};

/* value of the per-CPU LRU map `tasks`: each CPU's slot counts what ran on that CPU */
struct energy_task {
	__u64 on_cpu_ns;
	__u64 switches;
	__u64 cycles;
	__u64 instructions;
	__u64 by_prev_ns;      /* the same stints as sum - prev_sum (bounded, else ktime): the pre-fix estimate, for comparison (hash flavours only) */
	__u64 exit_switches;   /* switches out of an exiting thread (exit_state set): its last stint is in */
	__u64 over_wall_ns;    /* how much of its stints exceeded the interval between the switches (see stint_core; hash flavours only) */
	char comm[ENERGY_COMM_LEN];
};

/*
 * value of `charged` (LRU hash keyed by the task_struct's address): the thread's
 * se.sum_exec_runtime when its last stint was charged, and its task->start_time then, which tells a
 * reused task_struct (a task born later) from a thread that exec'd from a non-leader thread
 * (de_thread gives it its leader's, older, start time and id)
 */
struct energy_thread {
	__u64 start_ns;
	__u64 charged_ns;
};

/*
 * value of `threads` (task-local storage, the tp_btf flavour where the kernel has it): what
 * `charged` holds, plus the thread's stints not yet added to `tasks` (see flush in energy.bpf.c)
 */
struct energy_pending {
	__u64 charged_ns;   /* se.sum_exec_runtime when its last stint was charged (0: none yet) */
	__u64 css;          /* task->cgroups (css_set) when cgroup_id was read: a change means a cgroup move */
	__u64 cgroup_id;    /* v2 cgroup id of the pending stints */
	__u64 ns;           /* pending on-CPU ns */
	__u64 by_prev_ns;
	__u64 over_wall_ns;
	__u64 cycles;
	__u64 instructions;
	__u32 switches;     /* pending stints */
	__u32 cpu;          /* the CPU they ran on (a stint on another CPU flushes them first) */
	__u32 flushes;      /* flushes so far (the name is refreshed on the first few, then every 16th) */
	__u32 pad;
};

/* per-CPU state and totals (`cpus`, a per-CPU array of one entry) */
struct energy_cpu {
	__u64 last_ns;         /* time of the previous sched_switch on this CPU (0: none yet); tp_btf: rq clock_task, tracepoint: ktime (hash flavours) */
	__u64 busy_ns;         /* time non-idle tasks ran, by the scheduler's clock (see stint_core); task-storage flavour: as flushed (= flushed_ns) */
	__u64 busy_wall_ns;    /* the same stints by the clock between switches (see switch_clock; hash flavours only) */
	__u64 ktime_fallbacks; /* first stints of RT/DL threads (no usable prev_sum): hash flavours charge ktime, task storage nothing */
	__u64 idle_ns;         /* time the idle task (pid 0) ran (by the clock between switches; hash flavours only) */
	__u64 unattributed_ns; /* busy time that found no slot in `tasks` (map full, entry evicted at once) */
	__u64 switches;        /* switches seen (task-storage flavour: non-idle ones, counted at flushes) */
	__u64 new_keys;        /* entries this CPU created in `tasks`: evictions = sum(new_keys) - live entries */
	__u64 idle_events;     /* power:cpu_idle entries (state != -1) */
	__u64 last_cycles;
	__u64 last_instructions;
	__u64 busy_cycles;
	__u64 idle_cycles;
	__u64 counter_errors;  /* bpf_perf_event_read_value failures while counters were enabled */
	__u64 first_stints;    /* stints of threads with no `charged` entry: sum - prev_sum (task storage: whole sum if started after load) */
	__u64 resyncs;         /* hash flavours: stints where sum - charged and sum - prev_sum differ by more than 100 us */
	__u64 resync_lost_ns;  /* ... where sum - charged was larger (prev_sum moved while the task ran) */
	__u64 resync_over_ns;  /* ... where sum - prev_sum was larger (prev_sum older than the last switch out) */
	__u64 over_wall;       /* hash flavours: stints whose sum - charged exceeded the interval between the switches (+ 1/8 + 100 us): charged in full */
	__u64 over_wall_ns;    /* ... by how much in total (sum - charged - wall) */
	__u64 over_wall_max_ns; /* ... the largest excess */
	/*
	 * busy time of this CPU already added to `tasks` (or to unattributed_ns): busy_ns minus the
	 * stints threads still hold pending in task storage. Attribution divides a CPU's energy by
	 * this total, not busy_ns, so the task map and the total agree at every read. Added to
	 * atomically: a thread that migrated flushes its pending stints into its old CPU's slot.
	 */
	__u64 flushed_ns;
	__u64 flushes;         /* pending stints added to `tasks` (task-storage flavour; hash flavours: every stint) */
	__u64 remote_flushes;  /* ... of a thread that moved to another CPU (written into the old CPU's slots) */
	__u64 storage_misses;  /* bpf_task_storage_get gave nothing (no memory, recursion): stint charged at once */
	__u32 cpu;             /* this CPU's id + 1 (0: not known yet), cached to skip a helper call */
	__u32 pad;
	__u64 iter_exits;      /* iter flavour: exit records written to `exited` (the controller compares what it drained: the rest the LRU evicted) */
};

/* `freq`: the last power:cpu_frequency value per CPU (indexed by cpu id; kHz) */
struct energy_freq {
	__u64 khz;
	__u64 events;
};

/*
 * The iter flavour (no sched_switch program): one record per thread from the task iterator
 * (`energy_iter`, read by the controller at each sample), and the same record for a thread the
 * kernel has freed (`exited`, written at sched_process_free: its runtime is final there). The
 * controller charges each thread's se.sum_exec_runtime growth since its previous record.
 */
struct energy_iter_task {
	__u64 task;         /* the task_struct's address: a thread's identity across exec (de_thread gives the exec'ing thread the leader's tid and start time) */
	__u64 cgroup_id;    /* v2 cgroup id (dfl_cgrp's kernfs id, as bpf_get_current_cgroup_id) */
	__u64 sum_ns;       /* se.sum_exec_runtime */
	__u64 start_ns;     /* task->start_time: a later one at the same address is another task (the address was reused) */
	__u32 tid;
	__u32 tgid;
	char comm[ENERGY_COMM_LEN]; /* the thread group leader's */
};

/* key of `exited` */
struct energy_exit_key {
	__u64 task;
	__u64 start_ns;
};

#define ENERGY_MAX_EXITED 16384

