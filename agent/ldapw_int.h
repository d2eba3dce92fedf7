/*
 * ldapw_int: what the files of ldapw share, and nothing outside it
 * includes.  ldapw.h is the module's face (the one door to libldap):
 *
 *   ldapw.c        connecting, binding, errors in words, what the server says
 *                  of itself, searches (paged, and sliced past a size limit)
 *   ldapw_write.c  writes: add, modify, rename, delete, initial passwords
 *
 * Memory: as ldapw.h says.
 */
#ifndef FLA_LDAPW_INT_H
#define FLA_LDAPW_INT_H

#include "ldapw.h"
#include "metrics.h"
#include "common/log.h"
#include "common/sbuf.h"
#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdatomic.h>
#include <ldap.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

struct ldapw {
	LDAP *ld;
	char *uri;
	bool starttls;
	char *ca_file;
	char *bind_dn;
	char *password_file;
	char *sasl_mech;
	long network_timeout;
	long timeout;
	bool server_read;
	struct ldapw_server server;
};

/* The monotonic clock, for the time an operation takes. */
static inline double ldapw_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ldapw.c */
void ldapw_describe(struct ldapw_error *err, const char *op, int rc, char *diag);
void ldapw_set_error(struct ldapw *lw, struct ldapw_error *err, const char *op, int rc);
int ldapw_need_connection(struct ldapw *lw, struct ldapw_error *err, const char *op);

#endif
