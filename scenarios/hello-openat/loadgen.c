// openat load generator for the hello-openat benchmark: fixed rate or flat out, reports what it
// achieved. Opens a path that does not exist, so each op is one cheap syscall (the tracepoint and
// the consumer are what is measured, not the filesystem).
// usage: loadgen <rate/s, 0 = flat out> <duration ms> <path> [--wait [--warmup MS]]
//   --wait: print our pid, then wait for a line on stdin before starting (so tracers can filter by pid)
//   --warmup MS: after that line, run MS at the same rate, print "warm <ops>", and wait for a second
//     line before the measured run: a consumer's start-up (a JIT compiling its hot loop, first-touch
//     of its buffers) happens before its CPU is read, as in a consumer that has been running a while.
//     The JSON result covers the measured run only.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* one run at `rate` ops/s (0 = flat out) for `dur` ns: returns the ops done, their elapsed time in *el */
static long long run(double rate, long long dur, const char *path, long long *el)
{
	long long ops = 0, start = now_ns(), end = start + dur, t = start;
	while (t < end) {
		/* pace in 100 µs slices: ops due so far minus ops done */
		long long due = rate > 0 ? (long long)((t - start) * rate / 1e9) + 1 : ops + 256;
		while (ops < due) {
			int fd = openat(AT_FDCWD, path, O_RDONLY);
			if (fd >= 0)
				close(fd);
			ops++;
		}
		t = now_ns();
		if (rate > 0) {
			long long next = start + (long long)((ops + 1) * 1e9 / rate);
			if (next > t + 100000) {
				struct timespec ts = {0, next - t > 1000000 ? 1000000 : next - t};
				nanosleep(&ts, NULL);
				t = now_ns();
			}
		}
	}
	*el = now_ns() - start;
	return ops;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s <rate/s|0> <duration_ms> <path> [--wait [--warmup MS]]\n", argv[0]);
		return 2;
	}
	double rate = atof(argv[1]);
	long long dur = atoll(argv[2]) * 1000000LL;
	const char *path = argv[3];
	int wait = argc > 4 && strcmp(argv[4], "--wait") == 0;
	long long warmup = argc > 6 && wait && strcmp(argv[5], "--warmup") == 0 ? atoll(argv[6]) * 1000000LL : 0;
	char line[16];
	if (wait) {
		printf("%d\n", getpid());
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	long long el;
	if (warmup > 0) {
		printf("warm %lld\n", run(rate, warmup, path, &el));
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	long long ops = run(rate, dur, path, &el);
	printf("{\"ops\":%lld,\"elapsed_ns\":%lld,\"rate\":%.1f,\"ns_per_op\":%.1f}\n", ops, el, ops * 1e9 / el, (double)el / ops);
	return 0;
}
