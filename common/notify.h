/*
 * notify: tells the service manager (systemd, Type=notify) how the daemon
 * stands: ready, reloading, stopping, and a one-line status.  Built on
 * libsystemd's sd_notify when configure found it; otherwise, and when the
 * process was not started by systemd (no NOTIFY_SOCKET), every call does
 * nothing.
 *
 * Memory: nothing is kept.
 */
#ifndef FLA_NOTIFY_H
#define FLA_NOTIFY_H

void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);

#endif
