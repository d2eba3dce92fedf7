#include "build.h"

#include "common/log.h"
#include "common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum log_level cur_level = LOG_LVL_INFO;
static enum log_target cur_target = LOG_TARGET_STDERR;
static bool cur_timestamps;
static bool cur_journal; /* stderr is the journal's stream: <N> priorities, its own timestamps */
static bool syslog_open;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* What this thread is working on, said once and carried by each of its lines. */
static _Thread_local char context[256];

void log_set_context(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(context, sizeof(context), fmt, ap);
	va_end(ap);
}

void log_clear_context(void)
{
	context[0] = '\0';
}

const char *log_level_name(enum log_level lvl)
{
	if ((unsigned)lvl < sizeof(level_names) / sizeof(level_names[0]))
		return level_names[lvl];
	return "?";
}

/* systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connected
 * to stdout and stderr: when stderr is still that stream, lines go to the
 * journal, which takes a "<N>" priority prefix and stamps the time itself. */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(enum log_level lvl, enum log_target target, bool timestamps)
{
	cur_level = lvl;
	cur_journal = target == LOG_TARGET_STDERR && stderr_is_journal();
	cur_timestamps = timestamps && !cur_journal;
	if (target == LOG_TARGET_SYSLOG && !syslog_open) {
		openlog(PACKAGE_NAME, LOG_PID | LOG_NDELAY, LOG_DAEMON);
		syslog_open = true;
	}
	cur_target = target;
}

void log_set_level(enum log_level lvl)
{
	cur_level = lvl;
}

bool log_enabled(enum log_level lvl)
{
	return lvl <= cur_level;
}

void log_close(void)
{
	if (syslog_open) {
		closelog();
		syslog_open = false;
	}
	cur_target = LOG_TARGET_STDERR;
}

static int syslog_priority(enum log_level lvl)
{
	switch (lvl) {
	case LOG_LVL_ERROR:
		return LOG_ERR;
	case LOG_LVL_WARN:
		return LOG_WARNING;
	case LOG_LVL_INFO:
		return LOG_INFO;
	case LOG_LVL_DEBUG:
		return LOG_DEBUG;
	}
	return LOG_INFO;
}

/*
 * Whether a reader could be misled by code point cp printed as it is: C1
 * controls, the line and paragraph separators, the bidirectional controls
 * (which reorder what follows them on screen: U+202E makes "exe.txt" read
 * "txt.exe"), the zero-width and invisible format characters, and
 * noncharacters.
 */
static bool misleading(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x061c || cp == 0x180e ||
	       (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) ||
	       cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) || (cp >= 0xfdd0 && cp <= 0xfdef) ||
	       (cp & 0xfffe) == 0xfffe || (cp >= 0xe0000 && cp <= 0xe007f);
}

/*
 * Copies src into dst (cap bytes, NUL-terminated) with everything that could
 * forge a line or mislead its reader escaped: C0 and DEL as \xNN, a byte
 * that is not UTF-8 as \xNN, and the code points misleading() names as
 * \uNNNN (\UNNNNNNNN past U+FFFF).  Whatever a client, a record or a
 * server sent thus stays on its line and reads as it is.
 */
static size_t escape_controls(char *dst, size_t cap, const char *src)
{
	size_t o = 0, len = strlen(src), i = 0;

	while (i < len && o + 11 < cap) {
		size_t at = i;
		uint32_t cp;
		unsigned char c = (unsigned char)src[i];
		if (c < 0x80) {
			i++;
			if (c < 0x20 || c == 0x7f)
				o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
			else
				dst[o++] = (char)c;
		} else if (utf8_decode(src, len, &i, &cp) < 0) {
			i = at + 1;
			o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
		} else if (misleading(cp)) {
			o += (size_t)snprintf(dst + o, cap - o, cp > 0xffff ? "\\U%08x" : "\\u%04x", (unsigned)cp);
		} else {
			memcpy(dst + o, src + at, i - at);
			o += i - at;
		}
	}
	dst[o] = '\0';
	return o;
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char raw[4096], body[4096], line[4200];
	size_t off = 0;
	int n;

	if (!log_enabled(lvl))
		return;
	n = context[0] ? snprintf(raw, sizeof(raw), "%s: ", context) : 0;
	if (n < 0 || (size_t)n >= sizeof(raw))
		n = 0;
	vsnprintf(raw + n, sizeof(raw) - (size_t)n, fmt, ap);
	escape_controls(body, sizeof(body), raw);
	if (cur_target == LOG_TARGET_SYSLOG) {
		syslog(syslog_priority(lvl), "%s", body);
		return;
	}
	if (cur_timestamps) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line + off, sizeof(line) - off, ".%03ldZ ", ts.tv_nsec / 1000000);
		if (n > 0)
			off += (size_t)n;
	}
	if (cur_journal)
		off = (size_t)snprintf(line, sizeof(line), "<%d>", syslog_priority(lvl));
	n = snprintf(line + off, sizeof(line) - off, "%s: %s: %s", PACKAGE_NAME, log_level_name(lvl), body);
	if (n > 0)
		off += (size_t)n;
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	/* one write per line: lines from several threads never interleave */
	if (write(STDERR_FILENO, line, off) < 0)
		return;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}
