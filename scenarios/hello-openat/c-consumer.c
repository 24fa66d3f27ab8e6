// The like-for-like baseline of the TypeScript consumer: the same BPF object
// (bpf/.output/hello_openat.bpf.o), the same pid filter baked into .rodata before load, the same
// ring size (the object's), the same record formatting ("%7u %-16s %s\n", like formatEvent()), read
// with libbpf. Only the language differs, so TS vs this is the language comparison; opensnoop
// (perf buffer, its own object and format) is a design comparison.
//
// Two consumer loops:
//   default          libbpf's own: ring_buffer__poll, woken by the kernel whenever the consumer had
//                    caught up (under a steady rate that is every few records), stdio's 4 KiB buffer.
//   COALESCE_MS      the TS consumer's policy, line for line (controller/libbpf/ringbuf.ts pump and
//                    OpenatTracer.writeLines): drain with ring_buffer__consume, write once per batch
//                    from a 1 MiB buffer, then sleep coalesce_delay_ms(rate) before draining again;
//                    only an empty ring waits in epoll, and after a wake-up it sleeps before
//                    draining. This makes TS vs C differ in the language alone.
//
// usage: openat-c-consumer OBJECT PID [COALESCE_MS]   (records to stdout)
// stderr: "READY" once attached; on SIGINT/SIGTERM it drains the ring, flushes and prints
//         {"delivered":N,"lost":N,"batches":N,"last_ns":N} as its last line (last_ns: CLOCK_MONOTONIC
//         of the last batch that delivered, so events/s is measured to the last delivery).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>
#include "../../bpf/hello_openat.h"

/* a name the kernel side could not keep whole is marked, never shown as if whole (the TS line
 * sink, controller/hello/lines.ts, writes the same bytes) */
#define HELLO_TRUNCATED_MARK " (truncated)"
#define HELLO_UNREADABLE_MARK "(unreadable: errno "

static volatile sig_atomic_t stop;
static unsigned long long delivered;
static unsigned long long batches;
static long long last_ns;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* coalesceDelayMs() of controller/libbpf/ringbuf.ts */
static int coalesce_delay_ms(double rate, int target_batch, int max_ms)
{
	if (max_ms <= 0)
		return 0;
	if (!(rate > 0))
		return max_ms;
	double d = target_batch * 1000.0 / rate;
	if (d < 1)
		return 0;
	return d < max_ms ? (int)(d + 0.5) : max_ms;
}

/* the TS consumer's loop (see the top of this file); target batch as RingBufferOptions.targetBatch */
static int run_coalesced(struct ring_buffer *rb, int max_ms)
{
	const int target_batch = 1024;
	int epfd = ring_buffer__epoll_fd(rb);
	struct epoll_event ev;
	long long last = now_ns();
	double rate = 0;
	static char buf[1 << 20];
	setvbuf(stdout, buf, _IOFBF, sizeof(buf));
	while (!stop) {
		int n = ring_buffer__consume(rb);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "ring_buffer__consume: %s\n", strerror(-n));
			return n;
		}
		if (n > 0) {
			fflush(stdout);
			batches++;
			long long t = now_ns();
			rate = n * 1e9 / (t - last > 50000 ? t - last : 50000);
			last = last_ns = t;
			int d = coalesce_delay_ms(rate, target_batch, max_ms);
			if (d > 0)
				sleep_ms(d);
			continue;
		}
		int w = epoll_wait(epfd, &ev, 1, 100);
		if (w > 0 && max_ms > 0 && !stop) {
			last = now_ns();
			sleep_ms(coalesce_delay_ms(rate, target_batch, max_ms));
		}
	}
	return 0;
}

static void on_signal(int sig) { (void)sig; stop = 1; }

static int handle_event(void *ctx, void *data, size_t size)
{
	const struct openat_event *e = data;
	(void)ctx;
	if (size < sizeof(*e))
		return 0;
	/* comm and filename are NUL-terminated by the kernel helpers; bound them anyway */
	if (e->fname_status == HELLO_FNAME_WHOLE)
		printf("%7u %-16.*s %.*s\n", e->pid, HELLO_COMM_LEN, e->comm, HELLO_FNAME_LEN, e->filename);
	else if (e->fname_status == HELLO_FNAME_TRUNCATED)
		printf("%7u %-16.*s %.*s" HELLO_TRUNCATED_MARK "\n", e->pid, HELLO_COMM_LEN, e->comm, HELLO_FNAME_LEN, e->filename);
	else if (e->fname_status < 0)
		printf("%7u %-16.*s " HELLO_UNREADABLE_MARK "%d)\n", e->pid, HELLO_COMM_LEN, e->comm, -e->fname_status);
	else
		printf("%7u %-16.*s %.*s (fname_status %d)\n", e->pid, HELLO_COMM_LEN, e->comm, HELLO_FNAME_LEN, e->filename, e->fname_status);
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
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: %s OBJECT PID [COALESCE_MS]\n", argv[0]);
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
	if (argc == 4) {
		run_coalesced(rb, atoi(argv[3]));
	} else {
		while (!stop) {
			err = ring_buffer__poll(rb, 100);
			if (err < 0 && err != -EINTR) {
				fprintf(stderr, "ring_buffer__poll: %s\n", strerror(-err));
				break;
			}
			if (err > 0) {
				batches++;
				last_ns = now_ns();
			}
		}
	}
	if (ring_buffer__consume(rb) > 0)
		last_ns = now_ns();
	fflush(stdout);
	fprintf(stderr, "{\"delivered\":%llu,\"lost\":%llu,\"batches\":%llu,\"last_ns\":%lld}\n", delivered, read_lost(obj), batches, last_ns);
	ring_buffer__free(rb);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
