/* Shared by every .bpf.c: CO-RE headers and the conventions the TypeScript side relies on. */
#pragma once
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

/*
 * LAB_EXPORT(T) makes struct T appear in the object's BTF even when only a pointer to it is used
 * (ring buffer records): the TS codecs and generated types (bpf/gen/) are read from that BTF, so
 * the C struct stays the single definition of the layout.
 */
#define LAB_EXPORT(T) struct T *__lab_export_##T __attribute__((unused))
/*
 * LAB_EXPORT_ENUM(T) does the same for enum T, whose constants are otherwise dropped from BTF when
 * only used as values. Constants the TS side needs are enums, not #defines, for this: they reach
 * bpf/gen/<name>.enums.ts, and no number is written twice.
 */
#define LAB_EXPORT_ENUM(T) enum T *__lab_export_##T __attribute__((unused))

/* A per-CPU counter array the TS side reads as "lost": failed ring buffer reservations. */
#define LAB_LOST_COUNTER(name)                                                                 \
	struct {                                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                       \
		__uint(max_entries, 1);                                                        \
		__type(key, __u32);                                                            \
		__type(value, __u64);                                                          \
	} name SEC(".maps")

static __always_inline void lab_count(void *map)
{
	__u32 k = 0;
	__u64 *c = bpf_map_lookup_elem(map, &k);
	/* atomic: where programs run preemptibly (syscall tracepoints on 7.x) two runs on one CPU can interleave */
	if (c)
		__sync_fetch_and_add(c, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* a file's type bits (struct inode.i_mode): a socket's descriptor */
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * in_ia32_syscall(): the current task is in a 32-bit syscall, whose numbers are another table
 * (ia32 20 is getpid, not writev) and which fires no syscalls:* tracepoint. x86's TS_COMPAT in
 * thread_info.status; false where that field does not exist (other architectures).
 */
#define LAB_TS_COMPAT 0x0002
static __always_inline bool lab_compat_task(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (!bpf_core_field_exists(task->thread_info.status))
		return false;
	return BPF_CORE_READ(task, thread_info.status) & LAB_TS_COMPAT;
}

/*
 * Tests only: built with -DLAB_VARIANT (bpf/build.ts compile(…, defines)) a program that starts
 * with LAB_VARIANT_MARK() carries one more instruction, so that build stands for another release
 * of the same source (the daemons' upgrade tests replace what differs).
 */
#ifdef LAB_VARIANT
#define LAB_VARIANT_MARK() asm volatile("r0 = 0" ::: "r0")
#else
#define LAB_VARIANT_MARK()
#endif
