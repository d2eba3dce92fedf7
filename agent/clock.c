#include "build.h"

#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_override(const char *s, time_t *out)
{
	struct tm tm;
	char *end;
	long long n;

	memset(&tm, 0, sizeof(tm));
	n = strtoll(s, &end, 10);
	if (*s && !*end) {
		*out = (time_t)n;
		return 0;
	}
	end = strptime(s, "%Y-%m-%d", &tm);
	if (!end)
		return -1;
	if (*end == 'T' || *end == ' ') {
		end = strptime(end + 1, "%H:%M:%S", &tm);
		if (!end)
			return -1;
		if (*end == 'Z' && end[1] == '\0') {
			*out = timegm(&tm);
			return 0;
		}
	}
	if (*end)
		return -1;
	tm.tm_isdst = -1;
	*out = mktime(&tm);
	return 0;
}

time_t clock_now(void)
{
	const char *o = getenv(CLOCK_ENV);
	char buf[64];
	time_t t;

	if (o && o[0] == '@') {
		/* "@FILE": the time is read from FILE at every call, so a test can move it */
		FILE *fp = fopen(o + 1, "r");
		if (fp) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
			fclose(fp);
			buf[n] = '\0';
			buf[strcspn(buf, "\r\n")] = '\0';
			if (parse_override(buf, &t) == 0)
				return t;
		}
		return time(NULL);
	}
	if (o && *o && parse_override(o, &t) == 0)
		return t;
	return time(NULL);
}

void clock_today(char *buf, size_t len)
{
	time_t t = clock_now();
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}
