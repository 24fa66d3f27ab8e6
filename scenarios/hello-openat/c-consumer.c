// The like-for-like baseline of the TypeScript consumer: the same BPF object
// (bpf/.output/hello_openat.bpf.o), the same pid filter baked into .rodata before load, the same
// ring size (the object's), the same record formatting ("%7u %-16s %s\n", like formatEvent()), read
// with libbpf's ring_buffer__poll. Only the language and the consumer loop differ, so TS vs this is
// the language comparison; opensnoop (perf buffer, its own object and format) is a design comparison.
//
// usage: openat-c-consumer OBJECT PID            (records to stdout, fully buffered)
// stderr: "READY" once attached; on SIGINT/SIGTERM it drains the ring, flushes and prints
//         {"delivered":N,"lost":N} as its last line.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>
#include "../../bpf/hello_openat.h"

static volatile sig_atomic_t stop;
static unsigned long long delivered;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int handle_event(void *ctx, void *data, size_t size)
{
	const struct openat_event *e = data;
	(void)ctx;
	if (size < sizeof(*e))
		return 0;
	/* comm and filename are NUL-terminated by the kernel helpers; bound them anyway */
	printf("%7u %-16.*s %.*s\n", e->pid, HELLO_COMM_LEN, e->comm, HELLO_FNAME_LEN, e->filename);
	delivered++;
	return 0;
}

/* write a u32 global (const volatile, in .rodata) before load, found through the object's BTF */
static int set_rodata_u32(struct bpf_object *obj, const char *name, __u32 value)
{
	struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map;
	bpf_object__for_each_map(map, obj) {
		const char *mn = bpf_map__name(map);
		size_t len = strlen(mn);
		if (len < 7 || strcmp(mn + len - 7, ".rodata") != 0)
			continue;
		int id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
		if (id < 0)
			return id;
		const struct btf_type *sec = btf__type_by_id(btf, id);
		const struct btf_var_secinfo *v = btf_var_secinfos(sec);
		for (int i = 0; i < btf_vlen(sec); i++, v++) {
			const struct btf_type *var = btf__type_by_id(btf, v->type);
			if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
				continue;
			size_t sz;
			const char *cur = bpf_map__initial_value(map, &sz);
			if (!cur || v->offset + sizeof(value) > sz)
				return -EINVAL;
			char *copy = malloc(sz);
			if (!copy)
				return -ENOMEM;
			memcpy(copy, cur, sz);
			memcpy(copy + v->offset, &value, sizeof(value));
			int err = bpf_map__set_initial_value(map, copy, sz);
			free(copy);
			return err;
		}
	}
	return -ENOENT;
}

static unsigned long long read_lost(struct bpf_object *obj)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, "lost");
	int ncpu = libbpf_num_possible_cpus();
	if (!m || ncpu <= 0)
		return 0;
	__u64 *vals = calloc(ncpu, sizeof(__u64));
	__u32 key = 0;
	unsigned long long sum = 0;
	if (vals && bpf_map_lookup_elem(bpf_map__fd(m), &key, vals) == 0)
		for (int i = 0; i < ncpu; i++)
			sum += vals[i];
	free(vals);
	return sum;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s OBJECT PID\n", argv[0]);
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	int err = set_rodata_u32(obj, "target_tgid", (__u32)strtoul(argv[2], NULL, 10));
	if (err) {
		fprintf(stderr, "set target_tgid: %s\n", strerror(-err));
		return 1;
	}
	if ((err = bpf_object__load(obj))) {
		fprintf(stderr, "load: %s\n", strerror(-err));
		return 1;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "handle_openat");
	struct bpf_link *link = prog ? bpf_program__attach(prog) : NULL;
	if (!link) {
		fprintf(stderr, "attach handle_openat: %s\n", strerror(errno));
		return 1;
	}
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "events")), handle_event, NULL, NULL);
	if (!rb) {
		fprintf(stderr, "ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	fprintf(stderr, "READY\n");
	while (!stop) {
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "ring_buffer__poll: %s\n", strerror(-err));
			break;
		}
	}
	ring_buffer__consume(rb);
	fflush(stdout);
	fprintf(stderr, "{\"delivered\":%llu,\"lost\":%llu}\n", delivered, read_lost(obj));
	ring_buffer__free(rb);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
