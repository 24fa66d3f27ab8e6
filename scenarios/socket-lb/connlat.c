// Load generator for the socket-lb benchmark: N new TCP connections one after another, each to a
// target drawn at random from a list (the services), timed from connect() to the first byte of the
// response (clock_gettime MONOTONIC), then closed. Prints one JSON line: latencies (µs, sorted
// percentiles), errors, the process's own CPU (getrusage, and on-CPU ns from /proc/self/schedstat) and how often each reply
// (backend) was seen.
//   usage: connlat N SEED [lat] < targets   (targets: "ADDR PORT" per line, IPv4 or IPv6; "lat" adds
//   every latency, sorted, so slices of one configuration can be merged into exact percentiles)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct target { struct sockaddr_storage ss; socklen_t len; };

/* on-CPU ns of this (single-threaded) process, including softirq work run in its context: exact
 * where rusage has tick granularity */
static unsigned long long schedstat(void)
{
	unsigned long long ns = 0;
	FILE *f = fopen("/proc/self/schedstat", "r");
	if (f) {
		if (fscanf(f, "%llu", &ns) != 1)
			ns = 0;
		fclose(f);
	}
	return ns;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s N SEED < targets\n", argv[0]);
		return 2;
	}
	long n = atol(argv[1]);
	unsigned seed = (unsigned)atol(argv[2]);
	int all = argc > 3 && !strcmp(argv[3], "lat");
	size_t cap = 1024, nt = 0;
	struct target *t = malloc(cap * sizeof *t);
	char addr[128];
	unsigned port;
	while (scanf("%127s %u", addr, &port) == 2) {
		if (nt == cap)
			t = realloc(t, (cap *= 2) * sizeof *t);
		memset(&t[nt], 0, sizeof t[nt]);
		if (strchr(addr, ':')) {
			struct sockaddr_in6 *s = (void *)&t[nt].ss;
			s->sin6_family = AF_INET6;
			s->sin6_port = htons(port);
			inet_pton(AF_INET6, addr, &s->sin6_addr);
			t[nt].len = sizeof *s;
		} else {
			struct sockaddr_in *s = (void *)&t[nt].ss;
			s->sin_family = AF_INET;
			s->sin_port = htons(port);
			inet_pton(AF_INET, addr, &s->sin_addr);
			t[nt].len = sizeof *s;
		}
		nt++;
	}
	if (!nt) {
		fprintf(stderr, "no targets\n");
		return 2;
	}
	double *lat = malloc(n * sizeof *lat);
	long ok = 0, errs = 0;
	char replies[16][64];
	long rcount[16] = {};
	int nr = 0;
	char buf[128];
	unsigned long long cpu0 = schedstat(); /* the loop only: not exec or reading the targets */
	for (long i = 0; i < n; i++) {
		struct target *x = &t[rand_r(&seed) % nt];
		struct timespec a, b;
		int fd = socket(x->ss.ss_family, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (connect(fd, (void *)&x->ss, x->len) || write(fd, "x", 1) != 1) {
			errs++;
			close(fd);
			continue;
		}
		ssize_t r = read(fd, buf, sizeof buf - 1);
		clock_gettime(CLOCK_MONOTONIC, &b);
		close(fd);
		if (r <= 0) {
			errs++;
			continue;
		}
		buf[r] = 0;
		char *nl = strchr(buf, '\n');
		if (nl)
			*nl = 0;
		int k;
		for (k = 0; k < nr && strcmp(replies[k], buf); k++)
			;
		if (k == nr && nr < 16)
			snprintf(replies[nr++], 64, "%s", buf);
		if (k < 16)
			rcount[k]++;
		lat[ok++] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	unsigned long long onCpuNs = schedstat() - cpu0;
	qsort(lat, ok, sizeof *lat, cmp);
	double sum = 0;
	for (long i = 0; i < ok; i++)
		sum += lat[i];
	printf("{\"n\":%ld,\"errors\":%ld,\"p50Us\":%.2f,\"p99Us\":%.2f,\"meanUs\":%.2f,\"userUs\":%ld,\"sysUs\":%ld,\"onCpuNs\":%llu,\"replies\":{", ok, errs,
	       ok ? lat[ok / 2] : 0, ok ? lat[(long)(ok * 0.99)] : 0, ok ? sum / ok : 0, ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
	       ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec, onCpuNs);
	for (int k = 0; k < nr; k++)
		printf("%s\"%s\":%ld", k ? "," : "", replies[k], rcount[k]);
	printf("}");
	if (all) {
		printf(",\"lat\":[");
		for (long i = 0; i < ok; i++)
			printf("%s%.2f", i ? "," : "", lat[i]);
		printf("]");
	}
	printf("}\n");
	return 0;
}
