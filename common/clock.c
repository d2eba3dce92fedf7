#include "build.h"

#include "common/clock.h"

#include <ctype.h>
#include <stdbool.h>
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

static int days_in_month(int y, int m)
{
	static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : d[m - 1];
}

static int digits(const char *s, size_t n, int *out)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int clock_parse_iso8601(const char *s, struct tm *tm, double *epoch)
{
	int y, mo, d, h = 0, mi = 0, se = 0, off = 0;
	const char *p = s;
	double frac = 0;
	time_t t;

	memset(tm, 0, sizeof(*tm));
	if (strlen(s) < 10 || digits(p, 4, &y) < 0 || p[4] != '-' || digits(p + 5, 2, &mo) < 0 || p[7] != '-' ||
	    digits(p + 8, 2, &d) < 0)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
		return -1;
	p += 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(p, 2, &h) < 0 || p[2] != ':' || digits(p + 3, 2, &mi) < 0)
			return -1;
		p += 5;
		if (*p == ':') {
			if (digits(p + 1, 2, &se) < 0)
				return -1;
			p += 3;
			if (*p == '.' || *p == ',') {
				double unit = 0.1;
				p++;
				if (!isdigit((unsigned char)*p))
					return -1;
				for (; isdigit((unsigned char)*p); p++, unit /= 10)
					frac += (*p - '0') * unit;
			}
		}
		if (h > 23 || mi > 59 || se > 60)
			return -1;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int oh, om = 0, sign = *p == '-' ? -1 : 1;
			p++;
			if (digits(p, 2, &oh) < 0)
				return -1;
			p += 2;
			if (*p == ':')
				p++;
			if (isdigit((unsigned char)*p)) {
				if (digits(p, 2, &om) < 0)
					return -1;
				p += 2;
			}
			if (oh > 23 || om > 59)
				return -1;
			off = sign * (oh * 3600 + om * 60);
		}
	}
	if (*p)
		return -1;
	tm->tm_year = y - 1900;
	tm->tm_mon = mo - 1;
	tm->tm_mday = d;
	tm->tm_hour = h;
	tm->tm_min = mi;
	tm->tm_sec = se > 59 ? 59 : se;
	t = timegm(tm) - off;
	if (off && !gmtime_r(&t, tm))
		return -1;
	if (epoch)
		*epoch = (double)t + frac;
	return 0;
}

