/*
 * intruder: a test-only library that plays a compromised receiver.
 *
 * Loaded into `run` with LD_PRELOAD, it takes the place of libmicrohttpd's
 * MHD_start_daemon(), which only the receiver calls, once its sandbox is
 * applied: there, as code an attacker got into the process that parses
 * untrusted HTTP would, it tries what the receiver must not be able to do,
 * then starts the server as asked.  Each attempt is said on standard error
 * (the agent's log), one line each:
 *
 *   intruder: WHAT: refused (REASON)     the attempt failed, as it should
 *   intruder: WHAT: DONE                 it worked: the boundary has a hole
 *
 * What to attack comes from the environment: FLA_INTRUDER_TOKEN (a file the
 * receiver must not read: the rotated OAuth token), FLA_INTRUDER_LDAPI (the
 * directory's ldapi:// socket), FLA_INTRUDER_TCP (host:port of a server to
 * connect to: the directory); the memory the daemon publishes in is its
 * descriptor 6.  It never runs in a shipped build: the
 * Makefile builds it for the tests only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void said(const char *what, int ok)
{
	if (ok)
		fprintf(stderr, "intruder: %s: DONE\n", what);
	else
		fprintf(stderr, "intruder: %s: refused (%s)\n", what, strerror(errno));
}

static void read_token(const char *path)
{
	char buf[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	said("read the OAuth token", fd >= 0 && read(fd, buf, sizeof(buf)) > 0);
	if (fd >= 0)
		close(fd);
}

static void connect_ldapi(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	said("connect to the directory's ldapi socket",
	     fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	if (fd >= 0)
		close(fd);
}

static void connect_tcp(const char *hostport)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(hostport, ':');
	int fd;

	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - hostport) : 0, hostport);
	sa.sin_port = htons((unsigned short)atoi(colon ? colon + 1 : "0"));
	inet_pton(AF_INET, host, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	said("connect to the directory over TCP", fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	if (fd >= 0)
		close(fd);
}

static void listen_anew(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	said("listen on a port of its own",
	     fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
	if (fd >= 0)
		close(fd);
}

/* The memory the daemon publishes health and figures in (descriptor 6): the receiver only reads it. */
static void write_published(void)
{
	void *m;

	said("write the daemon's published memory", pwrite(6, "x", 1, 0) == 1);
	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 6, 0);
	said("map the daemon's published memory to write", m != MAP_FAILED);
	if (m != MAP_FAILED)
		munmap(m, 4096);
	said("change the size of the daemon's published memory", ftruncate(6, 1) == 0);
}

static void read_daemon(void)
{
	char path[64], buf[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)getppid());
	fd = open(path, O_RDONLY | O_CLOEXEC);
	said("read the daemon's environment", fd >= 0 && read(fd, buf, sizeof(buf)) > 0);
	if (fd >= 0)
		close(fd);
}

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port, MHD_AcceptPolicyCallback apc, void *apc_cls,
                                    MHD_AccessHandlerCallback dh, void *dh_cls, ...)
{
	static int done;
	struct MHD_Daemon *d;
	va_list ap;

	if (!done++) {
		if (getenv("FLA_INTRUDER_TOKEN"))
			read_token(getenv("FLA_INTRUDER_TOKEN"));
		if (getenv("FLA_INTRUDER_LDAPI"))
			connect_ldapi(getenv("FLA_INTRUDER_LDAPI"));
		if (getenv("FLA_INTRUDER_TCP"))
			connect_tcp(getenv("FLA_INTRUDER_TCP"));
		listen_anew();
		write_published();
		read_daemon();
		fprintf(stderr, "intruder: done\n");
	}
	va_start(ap, dh_cls);
	d = MHD_start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
	va_end(ap);
	return d;
}
