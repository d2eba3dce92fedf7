/* Unit tests of the template language: every filter with its edge cases,
 * and every parse error with its offset. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl.h"

static const char *RECORD =
	"{\"id\": 42, \"first_name\": \"Jos\\u00e9\", \"last_name\": \"N\\u00fa\\u00f1ez\", \"nick\": null,"
	" \"empty\": \"\", \"none\": [], \"pad\": \"  a b \\u00a0\", \"ratio\": 1.5, \"flag\": true,"
	" \"big\": 9223372036854775807, \"ids\": [1, 99, 2], \"tags\": [\"x\", \"\", \"y\"],"
	" \"addr\": {\"city\": \"M\\u00e1laga\", \"zip\": \"29001\"}, \"teams\": [{\"name\": \"A\"}, {\"name\": \"B\"}],"
	" \"email\": \"Ana.Garcia@Example.com\", \"num\": \"42\", \"half\": \"4.5\", \"neg\": \"-7\","
	" \"day\": \"2026-01-31\", \"ts_plus\": \"2026-01-31T23:30:00+02:00\", \"ts_minus\": \"2026-01-31T23:30:00-02:00\","
	" \"ts_z\": \"2026-01-31T23:30:15.123Z\", \"ts_local\": \"2026-01-31T08:05:00\", \"bad_day\": \"2026-02-30\","
	" \"words\": \"Se\\u00e1n O'Brien\", \"sep\": \";\", \"obj\": {\"a\": 1},"
	" \"nfd\": \"Jose\\u0301\", \"ru\": \"\\u0414\\u043c\\u0438\\u0442\\u0440\\u0438\\u0439 \\u0401\\u043b\\u043a\\u0438\\u043d\"}";

static int lookup(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	(void)ctx;
	(void)err;
	if (strcmp(id, "1") == 0) {
		*dn = strdup("uid=ana,ou=people,dc=example,dc=com");
		return 1;
	}
	if (strcmp(id, "2") == 0) {
		*dn = strdup("uid=jose,ou=people,dc=example,dc=com");
		return 1;
	}
	return 0;
}

/* One table for map(): codes to office names. */
static struct tmpl_table offices_table;
static struct tmpl_tables tables = { &offices_table, 1 };

static void tables_setup(void)
{
	if (offices_table.name)
		return;
	offices_table.name = (char *)"offices";
	strmap_init(&offices_table.entries);
	strmap_put(&offices_table.entries, "42", "Madrid");
	strmap_put(&offices_table.entries, "99", "Paris");
}

/* Evaluates src on RECORD; returns the values joined by " | ", or "ERR: msg". */
static char *eval(const char *src, struct vlist *unresolved)
{
	cJSON *rec = cJSON_Parse(RECORD);
	struct tmpl *t = NULL;
	struct vlist out;
	struct sbuf err, res;
	char perr[256];
	size_t off;
	struct tmpl_env env = { 0 };

	assert_non_null(rec);
	vlist_init(&out);
	sbuf_init(&err);
	sbuf_init(&res);
	if (tmpl_parse(src, &t, perr, sizeof(perr), &off) < 0) {
		sbuf_addf(&res, "PARSE@%zu: %s", off, perr);
		goto done;
	}
	tables_setup();
	env.record = rec;
	env.tables = &tables;
	env.employee_dn = lookup;
	env.unresolved = unresolved;
	env.err = &err;
	if (tmpl_eval(t, &env, &out) < 0) {
		sbuf_addf(&res, "ERR: %s", sbuf_str(&err));
		goto done;
	}
	for (size_t i = 0; i < out.n; i++)
		sbuf_addf(&res, "%s%s", i ? " | " : "", out.v[i]);
done:
	tmpl_free(t);
	vlist_free(&out);
	sbuf_free(&err);
	cJSON_Delete(rec);
	return sbuf_detach(&res);
}

static void check(const char *src, const char *want)
{
	struct vlist u;
	char *got;

	vlist_init(&u);
	got = eval(src, &u);
	if (strcmp(got, want) != 0)
		fail_msg("template %s\n  got:  \"%s\"\n  want: \"%s\"", src, got, want);
	free(got);
	vlist_free(&u);
}

static void test_fields_and_literals(void **state)
{
	(void)state;
	check("plain text", "plain text");
	check("{{literal}} and }}", "{literal} and }");
	check("{first_name}", "José");
	check("{id}", "42");
	check("{ratio}", "1.5");
	check("{flag}", "true");
	check("{big}", "9.22337203685478e+18");
	check("{missing}", "");
	check("{nick}", "");
	check("{none}", "");
	check("{addr.city}", "Málaga");
	check("{addr.nothing}", "");
	check("{first_name.x}", "");
	check("{teams.name}", "A | B");
	check("{tags}", "x |  | y");
	check("t-{tags}", "t-x | t- | t-y");
	check("{first_name} {last_name}", "José Núñez");
	check("{ first_name | upper }", "JOSÉ");
	check("{obj}", "ERR: field obj is an object: name a field inside it ({a.b})");
	check("n={nick}", "");
	check("{nick}.{missing}", "");
	check("{nick}.{first_name}", ".José");
	check("{tags}{tags}", "xx | x | xy | x |  | y | yx | y | yy");
}

static void test_case_trim_ascii(void **state)
{
	(void)state;
	check("{first_name|lower}", "josé");
	check("{last_name|upper}", "NÚÑEZ");
	check("{email|lower}", "ana.garcia@example.com");
	check("{empty|upper}", "");
	check("{pad|trim}", "a b");
	check("{first_name} {last_name}|ascii", "José Núñez|ascii"); /* text, not a filter */
	check("{words|ascii}", "Sean O'Brien");
	check("{last_name|ascii}", "Nunez");
	check("{tags|upper}", "X |  | Y");
}

static void test_ascii_table(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "Jos\u00e9 N\u00fa\u00f1ez", "Jose Nunez" },
		{ "M\u00fcller", "Muller" },
		{ "Stra\u00dfe", "Strasse" },
		{ "\u00d8yvind", "Oyvind" },
		{ "\u0141ukasz", "Lukasz" },
		{ "\u00c6r\u00f8", "AEro" },
		{ "Bj\u00f6rk Gu\u00f0mundsd\u00f3ttir", "Bjork Gudmundsdottir" },
		{ "\u017b\u00f3\u0142\u0107", "Zolc" },
		{ "\u0150\u0171", "Ou" },
		{ "\u0152uvre \u0153", "OEuvre oe" },
		{ "\u00de\u00f3r", "THor" },
		{ "e\u0301", "e" },
		{ "\u738b\u5c0f\u660e", "wang xiao ming" },
		{ "\u0414\u043c\u0438\u0442\u0440\u0438\u0439", "Dmitrij" },
		{ "\u2018quoted\u2019 \u2013 dash", "'quoted' - dash" },
		{ "Nguy\u1ec5n", "Nguyen" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char json[256];
		const char *got;
		cJSON *rec, *v;
		struct tmpl *t = NULL;
		struct vlist out;
		struct sbuf err;
		char perr[128];
		size_t off;
		struct tmpl_env env = { 0 };

		snprintf(json, sizeof(json), "{\"v\": \"%s\"}", cases[i].in);
		rec = cJSON_Parse(json);
		assert_non_null(rec);
		(void)v;
		vlist_init(&out);
		sbuf_init(&err);
		assert_int_equal(tmpl_parse("{v|ascii}", &t, perr, sizeof(perr), &off), 0);
		env.record = rec;
		env.err = &err;
		assert_int_equal(tmpl_eval(t, &env, &out), 0);
		got = out.n ? out.v[0] : "";
		if (strcmp(got, cases[i].out) != 0)
			fail_msg("ascii(%s) = \"%s\", want \"%s\"", cases[i].in, got, cases[i].out);
		tmpl_free(t);
		vlist_free(&out);
		sbuf_free(&err);
		cJSON_Delete(rec);
	}
}

static void test_slug_alnum_truncate_replace(void **state)
{
	(void)state;
	check("{words|slug}", "sean-o-brien");
	check("{first_name|slug}.{last_name|slug}", "jose.nunez");
	check("{pad|slug}", "a-b");
	check("{email|slug}", "ana-garcia-example-com");
	check("{words|alnum}", "SenOBrien");
	check("{last_name|truncate(2)}", "Nú");
	check("{last_name|truncate(0)}", "");
	check("{last_name|truncate(10)}", "Núñez");
	check("{words|truncate(4)|upper}", "SEÁN");
	check("{email|replace('@', ' at ')}", "Ana.Garcia at Example.com");
	check("{email|replace(\".\", \"\")}", "AnaGarcia@Examplecom");
	check("{email|replace('q', 'y')}", "Ana.Garcia@Example.com");
	check("{email|before('@')|lower}", "ana.garcia");
	check("{email|after('@')}", "Example.com");
	check("{words|before('@')}", "Seán O'Brien");
	check("{words|after('@')}", "");
}

static void test_default(void **state)
{
	(void)state;
	check("{missing|default('x')}", "x");
	check("{nick|default('x')}", "x");
	check("{empty|default('x')}", "x");
	check("{none|default('cn=nobody')}", "cn=nobody");
	check("{first_name|default('x')}", "José");
	check("{nick|default(first_name)}", "José");
	check("{nick|default(missing)}", "");
	check("{nick|default(12)}", "12");
	check("{tags|default('z')}", "x |  | y");
	check("{nick|default(ids)}", "1 | 99 | 2");
}

static void test_date(void **state)
{
	(void)state;
	check("{day|date('%Y%m%d')}", "20260131");
	check("{day|date('%Y%m%d%H%M%SZ')}", "20260131000000Z");
	check("{ts_plus|date('%Y-%m-%d %H:%M')}", "2026-01-31 21:30");
	check("{ts_minus|date('%Y-%m-%d %H:%M')}", "2026-02-01 01:30");
	check("{ts_z|date('%H:%M:%S')}", "23:30:15");
	check("{ts_local|date('%d/%m/%Y %H:%M')}", "31/01/2026 08:05");
	check("{missing|date('%Y')}", "");
	check("{empty|date('%Y')}", "");
	check("{bad_day|date('%Y')}", "ERR: date: \"2026-02-30\" is not an ISO 8601 date or timestamp");
	check("{words|date('%Y')}", "ERR: date: \"Seán O'Brien\" is not an ISO 8601 date or timestamp");
}

static void test_add_join(void **state)
{
	(void)state;
	check("{id|add(10000)}", "10042");
	check("{num|add(1)}", "43");
	check("{neg|add(-3)}", "-10");
	check("{ids|add(1)}", "2 | 100 | 3");
	check("{missing|add(1)}", "");
	check("{half|add(1)}", "ERR: add: \"4.5\" is not an integer");
	check("{ratio|add(1)}", "ERR: add: \"1.5\" is not an integer");
	check("{words|add(1)}", "ERR: add: \"Seán O'Brien\" is not an integer");
	check("{big|add(1)}", "ERR: add: \"9.22337203685478e+18\" is not an integer");
	check("{id|add(9223372036854775807)}", "ERR: add: 42 + 9223372036854775807 is out of range");
	check("{id|add(num)}", "84");
	check("{ids|join(',')}", "1,99,2");
	check("{tags|join(sep)}", "x;y");
	check("{none|join(',')}", "");
	check("{none|join(',')|default('-')}", "-");
	check("{ids|join(ids)}", "ERR: join: the argument ids has 3 values, not one");
}

static void test_employee_dn(void **state)
{
	struct vlist u;
	char *got;

	(void)state;
	vlist_init(&u);
	got = eval("{ids|employee_dn}", &u);
	assert_string_equal(got, "uid=ana,ou=people,dc=example,dc=com | uid=jose,ou=people,dc=example,dc=com");
	assert_int_equal(u.n, 1);
	assert_string_equal(u.v[0], "99");
	free(got);
	vlist_free(&u);
	check("{id|employee_dn}", "");
	check("{id|employee_dn|default('cn=nobody')}", "cn=nobody");
	check("{missing|employee_dn}", "");
	check("{ids|employee_dn|rdn}", "ana | jose");
	check("{words|rdn}", "ERR: rdn: \"Seán O'Brien\" is not a DN");
}

static void check_parse(const char *src, size_t want_off, const char *want)
{
	struct tmpl *t = NULL;
	char err[256] = "";
	size_t off = 999;

	if (tmpl_parse(src, &t, err, sizeof(err), &off) == 0) {
		tmpl_free(t);
		fail_msg("\"%s\" parsed, expected: %s", src, want);
	}
	if (strcmp(err, want) != 0 || off != want_off)
		fail_msg("\"%s\": got @%zu \"%s\", want @%zu \"%s\"", src, off, err, want_off, want);
}

static void test_parse_errors(void **state)
{
	(void)state;
	check_parse("{first_name", 0, "unterminated { (no closing })");
	check_parse("abc {x|lower", 4, "unterminated { (no closing })");
	check_parse("a}b", 1, "a lone } (write }} for a literal brace)");
	check_parse("{}", 0, "empty {} (write {{}} for literal braces)");
	check_parse("{x|slugg}", 3, "unknown filter \"slugg\" (did you mean slug?)");
	check_parse("{x|zzzzzz}", 3, "unknown filter \"zzzzzz\"");
	check_parse("{x|}", 3, "expected a filter name after |");
	check_parse("{x|truncate}", 3, "truncate takes 1 argument, got 0");
	check_parse("{x|replace('a')}", 3, "replace takes 2 arguments, got 1");
	check_parse("{x|lower(1)}", 3, "lower takes no argument, got 1");
	check_parse("{x|truncate(1, 2, 3)}", 3, "truncate takes 1 argument, got 3");
	check_parse("{x|truncate('a')}", 3, "truncate: the argument must be a whole number of characters");
	check_parse("{x|truncate(-1)}", 3, "truncate: the argument must be a whole number of characters");
	check_parse("{x|add(1.5)}", 3, "add: the argument must be an integer");
	check_parse("{x|replace('', 'b')}", 3, "replace: the text to replace must not be empty");
	check_parse("{x|default('open)}", 11, "unterminated string '...' in a filter argument");
	check_parse("{x|default(a b)}", 13, "expected , or ) in the arguments of default");
	check_parse("{@}", 2, "expected an attribute name after @");
	check_parse("{a b}", 3, "unexpected \"b\" in {...}: expected | or }");
	check_parse("{x|join(,)}", 8, "expected a filter argument: a quoted string, a number or a field name");
	/* found by fuzz_tmpl: a field-name argument that fails half-parsed was leaked */
	check_parse("{id|add(a.)}", 10, "expected a field name");
	check_parse("{id|replace('x', a.b.)}", 21, "expected a field name");
}

static void test_map(void **state)
{
	(void)state;
	check("{id|map(offices)}", "Madrid");
	check("{ids|map(offices, 'Elsewhere')}", "Elsewhere | Paris | Elsewhere");
	check("{num|map(offices)} office", "Madrid office");
	check("{nick|map(offices)|default('none')}", "none"); /* empty stays empty: default decides */
	check("{ids|map(offices)}", "ERR: map: \"1\" is not in table offices, and no default is given "
	                            "(map(offices, 'DEFAULT'))");
	check("{id|map(cities)}", "ERR: map: no table \"cities\"");
	check_parse("{id|map}", 4, "map takes 1 or 2 arguments, got 0");
	check_parse("{id|map('offices')}", 4,
	            "map: the first argument must be the name of a table (map(sites), not map('sites'))");
	check_parse("{id|map(a, b, c)}", 4, "map takes 1 or 2 arguments, got 3");
}

static void test_translit(void **state)
{
	(void)state;
	check("{ru|translit('Russian-Latin/BGN')}", "Dmitriy Yëlkin");
	check("{ru|translit('Russian-Latin/BGN; Latin-ASCII')|slug}", "dmitriy-yelkin");
	check("{ru|translit('Any-Latin')}", "Dmitrij Ëlkin");
	check("{ru|ascii}", "Dmitrij Elkin");
	check("{nfd|truncate(4)}", "Jos\u00e9"); /* counted as NFC: the decomposed é is one character */
	check("{nfd|ascii}", "Jose");
	check("{tags|translit('Latin-ASCII')}", "x |  | y");
	check("{words|translit('Latin-ASCII')}", "Sean O'Brien");
	check_parse("{x|translit('No-Such-Transform')}", 3,
	            "translit: ICU has no transform \"No-Such-Transform\" (an id such as 'Russian-Latin/BGN' or "
	            "'Any-Latin; Latin-ASCII')");
	check_parse("{x|translit(first_name)}", 3,
	            "translit: the argument must be the quoted id of an ICU transform, such as 'Russian-Latin/BGN'");
	check_parse("{x|translit('')}", 3,
	            "translit: the argument must be the quoted id of an ICU transform, such as 'Russian-Latin/BGN'");
}

static void test_brace_inside_string_argument(void **state)
{
	(void)state;
	check("{nick|default('{x}')}", "{x}");
	check("{nick|default(\"it's\")}", "it's");
	check("{nick|default('a\\'b')}", "a'b");
}

/* The fields a template reads that the record sends null (not those it lacks, nor empty ones). */
static void null_fields(const char *src, const char *want)
{
	struct tmpl *t = NULL;
	char err[256];
	size_t off = 0;
	cJSON *rec = cJSON_Parse(RECORD);
	struct sbuf out;

	sbuf_init(&out);
	assert_int_equal(tmpl_parse(src, &t, err, sizeof(err), &off), 0);
	size_t n = tmpl_null_fields(t, rec, ": ", &out);
	assert_string_equal(sbuf_str(&out), want);
	assert_int_equal(n, want[0] ? 1 + (size_t)(strstr(want, ", ") != NULL) : 0);
	sbuf_free(&out);
	tmpl_free(t);
	cJSON_Delete(rec);
}

static void test_null_fields(void **state)
{
	(void)state;
	null_fields("{nick}", ": nick");
	null_fields("{first_name} {nick|lower}", ": nick");
	null_fields("{missing}{empty}{none}", "");
	null_fields("{missing|default(nick)}", ": nick");
	null_fields("{nick} {addr.zip}{addr.none}", ": nick");
	null_fields("{nick}{nick}", ": nick, nick");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_and_literals),
		cmocka_unit_test(test_case_trim_ascii),
		cmocka_unit_test(test_ascii_table),
		cmocka_unit_test(test_slug_alnum_truncate_replace),
		cmocka_unit_test(test_default),
		cmocka_unit_test(test_date),
		cmocka_unit_test(test_add_join),
		cmocka_unit_test(test_employee_dn),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_brace_inside_string_argument),
		cmocka_unit_test(test_translit),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_null_fields),
	};
	return cmocka_run_group_tests_name("tmpl", tests, NULL, NULL);
}
