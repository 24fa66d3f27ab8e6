// Backend for the socket-lb scenario: answers every TCP read and every UDP datagram with the local
// address it was reached on ("10.0.0.11:8080\n"), so a client learns which backend served it.
// One epoll loop: TCP listens dual-stack on [::]:PORT (many concurrent connections, kept open until
// the client closes: established connections outlive backend changes); UDP binds one socket per
// address given, so a reply's source is the address the request went to.
//   usage: echo PORT [UDP-ADDR …]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int fmt(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char a[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;
		inet_ntop(AF_INET, &s->sin_addr, a, sizeof a);
		return snprintf(out, n, "%s:%u\n", a, ntohs(s->sin_port));
	}
	const struct sockaddr_in6 *s = (const void *)ss;
	if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
		inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], a, sizeof a);
		return snprintf(out, n, "%s:%u\n", a, ntohs(s->sin6_port));
	}
	inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof a);
	return snprintf(out, n, "[%s]:%u\n", a, ntohs(s->sin6_port));
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT [UDP-ADDR …]\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]);
	int ep = epoll_create1(0);
	int one = 1, zero = 0;
	int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any };
	if (bind(lfd, (void *)&a6, sizeof a6) || listen(lfd, 4096)) {
		perror("tcp bind/listen");
		return 1;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = ((uint64_t)1 << 32) | lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (int i = 2; i < argc; i++) {
		struct sockaddr_storage ss = {};
		socklen_t len;
		if (strchr(argv[i], ':')) {
			struct sockaddr_in6 *s = (void *)&ss;
			s->sin6_family = AF_INET6;
			s->sin6_port = htons(port);
			inet_pton(AF_INET6, argv[i], &s->sin6_addr);
			len = sizeof *s;
		} else {
			struct sockaddr_in *s = (void *)&ss;
			s->sin_family = AF_INET;
			s->sin_port = htons(port);
			inet_pton(AF_INET, argv[i], &s->sin_addr);
			len = sizeof *s;
		}
		int u = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (ss.ss_family == AF_INET6)
			setsockopt(u, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(u, (void *)&ss, len)) {
			perror(argv[i]);
			return 1;
		}
		ev.events = EPOLLIN;
		ev.data.u64 = ((uint64_t)2 << 32) | u;
		epoll_ctl(ep, EPOLL_CTL_ADD, u, &ev);
	}
	printf("ready\n");
	fflush(stdout);
	struct epoll_event evs[256];
	char buf[2048], out[128];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		for (int i = 0; i < n; i++) {
			int kind = evs[i].data.u64 >> 32, fd = (int)(evs[i].data.u64 & 0xffffffff);
			if (kind == 1) {
				for (;;) {
					int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
					if (c < 0)
						break;
					ev.events = EPOLLIN;
					ev.data.u64 = ((uint64_t)3 << 32) | c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
			} else if (kind == 2) {
				struct sockaddr_storage from, local;
				socklen_t fl = sizeof from, ll = sizeof local;
				ssize_t r = recvfrom(fd, buf, sizeof buf, 0, (void *)&from, &fl);
				if (r < 0)
					continue;
				getsockname(fd, (void *)&local, &ll);
				int m = fmt(&local, out, sizeof out);
				sendto(fd, out, m, 0, (void *)&from, fl);
			} else {
				ssize_t r = read(fd, buf, sizeof buf);
				if (r <= 0) {
					if (r < 0 && errno == EAGAIN)
						continue;
					close(fd); /* also leaves the epoll set */
					continue;
				}
				struct sockaddr_storage local;
				socklen_t ll = sizeof local;
				getsockname(fd, (void *)&local, &ll);
				int m = fmt(&local, out, sizeof out);
				if (write(fd, out, m) < 0)
					close(fd);
			}
		}
	}
}
