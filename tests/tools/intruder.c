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
 * connect to: the directory), FLA_INTRUDER_STATE (the daemon's state.db:
 * its tables, the queue included, must be out of reach); the memory the
 * daemon publishes in is its descriptor 6, its conversation with the daemon
 * descriptor 5 (wire.h).  With FLA_INTRUDER_FORGE set, it sends the daemon
 * deliveries the receiver would never pass (a second JSON value after the
 * first, a type it does not know, and the body FLA_INTRUDER_FORGE holds:
 * personal data), which the daemon must check again; when the file
 * FLA_INTRUDER_GARBAGE names exists, it writes bytes that are no message
 * (and with it set, again at each SIGUSR2, once the receiver serves).
 * It never runs in a shipped build: the Makefile builds it for the tests only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
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

static void open_state(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	said("open the daemon's state database", fd >= 0);
	if (fd >= 0)
		close(fd);
}

/* A message as wire.h frames it: kind, seq, len, aux, size, then the payload. */
static void send_message(uint32_t kind, uint32_t seq, const char *type, const char *body)
{
	struct { uint32_t kind, seq, len, aux; uint64_t size; } h = { kind, seq, 0, 0, 0 };
	char buf[16384];

	h.aux = (uint32_t)strlen(type);
	h.len = h.aux + (uint32_t)strlen(body);
	if (sizeof(h) + h.len > sizeof(buf))
		return;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), type, h.aux);
	memcpy(buf + sizeof(h) + h.aux, body, strlen(body));
	if (write(5, buf, sizeof(h) + h.len) < 0)
		fprintf(stderr, "intruder: cannot write to the daemon: %s\n", strerror(errno));
}

/* body: a delivery with personal data under spellings of the test's choosing */
static void forge(const char *body)
{
	/* seq numbers the receiver's own never reach: their answers are not waited for */
	send_message(2, 0xfffffff0u, "employees/employee/update",
	             "{\"id\":\"71\",\"first_name\":\"Forged\"} {\"iban\":\"ES9121000418450200051332\"}");
	send_message(2, 0xfffffff1u, "employees/employee/create_with_contract", body);
	send_message(2, 0xfffffff2u, "no/such/type", "{\"id\":\"73\"}");
	fprintf(stderr, "intruder: forged deliveries sent\n");
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

static const char garbage[] = "X\0ready\n and more bytes than a message head";

static void write_garbage(void)
{
	if (write(5, garbage, sizeof(garbage) - 1) < 0)
		fprintf(stderr, "intruder: cannot write to the daemon: %s\n", strerror(errno));
}

static void on_usr2(int sig)
{
	(void)sig;
	write_garbage();
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
		if (getenv("FLA_INTRUDER_STATE"))
			open_state(getenv("FLA_INTRUDER_STATE"));
		listen_anew();
		write_published();
		read_daemon();
		if (getenv("FLA_INTRUDER_FORGE"))
			forge(getenv("FLA_INTRUDER_FORGE"));
		if (getenv("FLA_INTRUDER_GARBAGE")) {
			if (access(getenv("FLA_INTRUDER_GARBAGE"), F_OK) == 0)
				write_garbage();
			signal(SIGUSR2, on_usr2);
		}
		fprintf(stderr, "intruder: done\n");
	}
	va_start(ap, dh_cls);
	d = MHD_start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
	va_end(ap);
	return d;
}
