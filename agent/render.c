#include "build.h"

#include "render.h"
#include "common/json.h"
#include "related.h"

#include "ldifw.h"
#include "common/strmap.h"

#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* What the offline hooks see: the batch's DNs and the values taken so far. */
struct batch_ctx {
	struct strmap dns;   /* employee id -> DN */
	struct strmap taken; /* "attr=value" (attr and value lower-cased ASCII) */
};

static int batch_taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	struct batch_ctx *c = ctx;
	struct sbuf k;
	int rc;

	(void)err;
	sbuf_init(&k);
	strmap_fold_key(&k, attr, value);
	rc = k.failed ? -1 : strmap_get(&c->taken, sbuf_str(&k)) != NULL;
	sbuf_free(&k);
	return rc;
}

static int batch_dn(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	struct batch_ctx *c = ctx;
	const char *v = strmap_get(&c->dns, id);

	(void)err;
	if (!v)
		return 0;
	*dn = strdup(v);
	return *dn ? 1 : -1;
}

/* Marks the unique values of an evaluated record as taken. */
static int remember(struct batch_ctx *c, const struct mapping_result *r)
{
	struct sbuf k;
	int rc = 0;

	sbuf_init(&k);
	for (size_t i = 0; i < r->nvalues && rc == 0; i++) {
		if (!(r->values[i].attr->flags & MAPPING_ATTR_UNIQUE))
			continue;
		for (size_t v = 0; v < r->values[i].values.n && rc == 0; v++) {
			strmap_fold_key(&k, r->values[i].attr->name, r->values[i].values.v[v]);
			rc = k.failed ? -1 : strmap_put(&c->taken, sbuf_str(&k), NULL);
		}
	}
	sbuf_free(&k);
	return rc;
}

static const char *action_name(enum mapping_action a)
{
	return a == MAPPING_MOVE ? "move" : a == MAPPING_DELETE ? "delete" : "disable";
}

void render_result(const struct mapping_result *r, struct sbuf *out)
{
	const char *kind = mapping_kind_name(r->kind);
	struct sbuf c;

	sbuf_init(&c);
	if (r->state == MAPPING_OUT_OF_SCOPE) {
		sbuf_addf(&c, "%s %s: out of scope (%s)", kind, r->id, r->scope_reason ? r->scope_reason : "only_if");
		ldifw_comment(out, sbuf_str(&c));
		sbuf_addc(out, '\n');
		goto cleanup;
	}
	if (r->state == MAPPING_TERMINATED) {
		sbuf_reset(&c);
		if (r->terminated_on)
			sbuf_addf(&c, "%s %s: terminated on %s", kind, r->id, r->terminated_on);
		else
			sbuf_addf(&c, "%s %s: terminated (active is false)", kind, r->id);
		if (r->action == MAPPING_DELETE) {
			sbuf_addf(&c, "; the entry %s is deleted (terminated.action: delete)", r->active_dn);
			ldifw_comment(out, sbuf_str(&c));
			sbuf_addc(out, '\n');
			goto cleanup;
		}
		sbuf_addf(&c, " (terminated.action: %s)", action_name(r->action));
		ldifw_comment(out, sbuf_str(&c));
	}
	for (size_t i = 0; i < r->unresolved.n; i++) {
		sbuf_reset(&c);
		sbuf_addf(&c, "%s %s: %s: employee %s could not be resolved; left out", kind, r->id,
		          r->unresolved_attr[i], r->unresolved.v[i]);
		ldifw_comment(out, sbuf_str(&c));
	}
	ldifw_attr(out, "dn", r->dn);
	for (size_t i = 0; i < r->object_classes->n; i++)
		ldifw_attr(out, "objectClass", r->object_classes->v[i]);
	for (size_t i = 0; i < r->nvalues; i++)
		for (size_t v = 0; v < r->values[i].values.n; v++)
			ldifw_attr(out, r->values[i].attr->name, r->values[i].values.v[v]);
	sbuf_addc(out, '\n');
cleanup:
	sbuf_free(&c);
}

static void record_error(struct sbuf *errs, enum mapping_kind kind, const struct mapping_result *r)
{
	sbuf_addf(errs, "%s %s: %s\n", mapping_kind_name(kind), r->id ? r->id : "?", sbuf_str(&r->error));
}

/* The rule groups of a batch, in the order their first member came. */
struct batch_groups {
	struct batch_group {
		const struct mapping_group *rule;
		char *dn, *value;
		struct vlist members;
	} *v;
	size_t n;
};

/* Each group of groups: an active employee belongs to gets its DN as a member. */
static int collect_groups(const struct mapping *m, const cJSON *rec, const struct mapping_result *r,
                          struct batch_groups *g, struct sbuf *err)
{
	struct mapping_membership *in = NULL;
	size_t n = 0;
	int rc = -1;

	if (r->state != MAPPING_ACTIVE || !m->ngroups)
		return 0;
	if (mapping_groups_of(m, rec, &in, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < g->n && !(g->v[k].rule == in[i].rule && strcmp(g->v[k].dn, in[i].dn) == 0))
			k++;
		if (k == g->n) {
			struct batch_group *v = realloc(g->v, (g->n + 1) * sizeof(*v));
			if (!v)
				goto cleanup;
			g->v = v;
			v[k] = (struct batch_group){ .rule = in[i].rule, .dn = in[i].dn, .value = in[i].value };
			in[i].dn = in[i].value = NULL;
			vlist_init(&v[k].members);
			g->n++;
		}
		vlist_push_copy(&g->v[k].members, r->dn, strlen(r->dn));
	}
	rc = 0;
cleanup:
	mapping_memberships_free(in, n);
	return rc;
}

/* The groups as an empty directory would receive them, after the people. */
static void render_groups(struct batch_groups *g, struct sbuf *out, struct render_stats *st)
{
	for (size_t i = 0; i < g->n; i++) {
		const struct mapping_group *rule = g->v[i].rule;
		struct sbuf c;
		sbuf_init(&c);
		sbuf_addf(&c, "groups.%s", rule->name);
		ldifw_comment(out, sbuf_str(&c));
		sbuf_free(&c);
		ldifw_attr(out, "dn", g->v[i].dn);
		for (size_t k = 0; k < rule->object_classes.n; k++)
			ldifw_attr(out, "objectClass", rule->object_classes.v[k]);
		ldifw_attr(out, rule->rdn_attr, g->v[i].value);
		ldifw_attr(out, rule->key_attr, rule->key_value);
		for (size_t k = 0; k < g->v[i].members.n; k++)
			ldifw_attr(out, rule->member_attr, g->v[i].members.v[k]);
		sbuf_addc(out, '\n');
		st->entries++;
		free(g->v[i].dn);
		free(g->v[i].value);
		vlist_free(&g->v[i].members);
	}
	free(g->v);
	g->v = NULL;
	g->n = 0;
}

/* The batch's employees with their related records set (a new array), or NULL. */
static cJSON *attach_all(const struct related *rel, const cJSON *batch, const cJSON *single)
{
	cJSON *all = cJSON_CreateArray();
	const cJSON *rec;

	for (rec = single ? single : batch->child; all && rec; rec = single ? NULL : rec->next) {
		cJSON *one = related_attach(rel, rec, NULL);
		if (!one || !cJSON_AddItemToArray(all, one)) {
			cJSON_Delete(one);
			cJSON_Delete(all);
			all = NULL;
		}
	}
	return all;
}

void render_batch(const struct mapping *m, const struct related *rel, enum mapping_kind kind, const cJSON *batch,
                  const char *today, struct sbuf *out, struct sbuf *errs, struct render_stats *st)
{
	struct batch_ctx ctx;
	struct batch_groups groups = { 0 };
	struct mapping_hooks h = { .taken = batch_taken, .ctx = &ctx, .today = today };
	const cJSON *rec;
	const cJSON *single = cJSON_IsArray(batch) ? NULL : batch;
	cJSON *attached = rel && kind == MAPPING_EMPLOYEE ? attach_all(rel, batch, single) : NULL;

	if (attached) {
		batch = attached;
		single = NULL;
	}
	strmap_init(&ctx.dns);
	strmap_init(&ctx.taken);
	/* pass 1: the DN of each employee of the batch, for employee_dn */
	if (kind == MAPPING_EMPLOYEE) {
		for (rec = single ? single : batch->child; rec; rec = single ? NULL : rec->next) {
			struct mapping_result r;
			if (mapping_eval(m, kind, rec, &h, &r) == 0 && r.state != MAPPING_OUT_OF_SCOPE &&
			    !(r.state == MAPPING_TERMINATED && r.action == MAPPING_DELETE)) {
				if (strmap_put(&ctx.dns, r.id, r.dn) < 0 || remember(&ctx, &r) < 0)
					out->failed = true;
			}
			mapping_result_free(&r);
		}
		strmap_clear(&ctx.taken);
		h.employee_dn = batch_dn;
	}
	/* pass 2: the entries */
	for (rec = single ? single : batch->child; rec; rec = single ? NULL : rec->next) {
		struct mapping_result r;
		if (mapping_eval(m, kind, rec, &h, &r) < 0) {
			record_error(errs, kind, &r);
			st->failed++;
		} else if (kind == MAPPING_EMPLOYEE && collect_groups(m, rec, &r, &groups, &r.error) < 0) {
			record_error(errs, kind, &r);
			st->failed++;
		} else {
			render_result(&r, out);
			if (r.state == MAPPING_OUT_OF_SCOPE || (r.state == MAPPING_TERMINATED && r.action == MAPPING_DELETE)) {
				st->comments++;
			} else {
				st->entries++;
				if (remember(&ctx, &r) < 0)
					out->failed = true;
			}
		}
		mapping_result_free(&r);
	}
	render_groups(&groups, out, st);
	strmap_free(&ctx.dns);
	strmap_free(&ctx.taken);
	cJSON_Delete(attached);
}

static char *read_all(FILE *fp, size_t *len)
{
	struct sbuf b;
	char chunk[65536];
	size_t n;

	sbuf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sbuf_add(&b, chunk, n);
	if (ferror(fp)) {
		sbuf_free(&b);
		return NULL;
	}
	*len = b.len;
	return sbuf_detach(&b);
}

cJSON *render_read_json(const char *path, struct sbuf *err)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	const char *name = strcmp(path, "-") == 0 ? "(standard input)" : path;
	const char *end = NULL;
	char *text = NULL;
	size_t len = 0;
	cJSON *json = NULL;

	if (!fp) {
		sbuf_addf(err, "%s: cannot read: %s", name, strerror(errno));
		return NULL;
	}
	text = read_all(fp, &len);
	if (fp != stdin)
		fclose(fp);
	if (!text) {
		sbuf_addf(err, "%s: cannot read: %s", name, strerror(errno));
		return NULL;
	}
	json = json_parse(text, len, &end);
	if (json) {
		/* nothing but white space may follow the value */
		const char *p = end;
		while (p < text + len && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
			p++;
		if (p < text + len) {
			cJSON_Delete(json);
			json = NULL;
			end = p;
		}
	}
	if (!json) {
		unsigned line = 1, col = 1;
		if (!end || end < text || end > text + len)
			end = text + len;
		for (const char *p = text; p < end; p++) {
			if (*p == '\n') {
				line++;
				col = 1;
			} else if (((unsigned char)*p & 0xC0) != 0x80) {
				col++;
			}
		}
		sbuf_addf(err, "%s:%u:%u: not valid JSON", name, line, col);
	}
	free(text);
	return json;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_text(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *t;

	if (!fp)
		return NULL;
	t = read_all(fp, len);
	fclose(fp);
	return t;
}

/* Shows what differs with diff -u (diffutils is part of every Debian). */
static void show_diff(const char *expected_path, const char *name, const char *actual, size_t len, FILE *out)
{
	char tmpl[] = "/tmp/fla-fixture-XXXXXX";
	int fd = mkstemp(tmpl);
	char label_a[512], label_b[512];
	char a_diff[] = "diff", a_u[] = "-u", a_label1[] = "--label", a_label2[] = "--label";
	char *expected = strdup(expected_path);
	char *argv[] = { a_diff, a_u, a_label1, label_a, a_label2, label_b, expected, tmpl, NULL };
	pid_t pid;
	int status;

	if (fd < 0 || !expected) {
		fprintf(out, "%s: cannot make a temporary file to compare: %s\n", name, strerror(errno));
		free(expected);
		if (fd >= 0)
			close(fd);
		return;
	}
	if (write(fd, actual, len) != (ssize_t)len) {
		fprintf(out, "%s: cannot write a temporary file: %s\n", name, strerror(errno));
		goto cleanup;
	}
	snprintf(label_a, sizeof(label_a), "%s.ldif (expected)", name);
	snprintf(label_b, sizeof(label_b), "%s.ldif (rendered)", name);
	fflush(out);
	if (posix_spawnp(&pid, "diff", NULL, NULL, argv, environ) != 0) {
		fprintf(out, "%s: the rendered entry differs (diff is not installed to show how)\n", name);
		goto cleanup;
	}
	waitpid(pid, &status, 0);
cleanup:
	free(expected);
	close(fd);
	unlink(tmpl);
}

/* The NAME of every DIR/NAME.json, sorted: 0 and *names, -1 (err) when there is none or the folder cannot be read. */
static int fixture_names(const char *dir, char ***names, size_t *n, struct sbuf *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = -1;

	*names = NULL;
	*n = 0;
	if (!d) {
		sbuf_addf(err, "%s: cannot read the folder: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char **v;
		if (len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (!(v = realloc(*names, (*n + 1) * sizeof(*v))))
			goto cleanup;
		*names = v;
		if (!((*names)[*n] = strndup(de->d_name, len - 5)))
			goto cleanup;
		(*n)++;
	}
	if (*n)
		qsort(*names, *n, sizeof(**names), cmp_names);
	else
		sbuf_addf(err, "%s: no NAME.json fixtures in this folder", dir);
	rc = *n ? 0 : -1;
cleanup:
	closedir(d);
	return rc;
}

/* One fixture: NAME.json rendered and compared with NAME.ldif; true when they are equal. */
static bool one_fixture(const struct mapping *m, const struct related *rel, const char *dir, const char *name,
                        const char *today, FILE *out)
{
	enum mapping_kind kind = strncmp(name, "team", 4) == 0 ? MAPPING_TEAM : MAPPING_EMPLOYEE;
	struct render_stats st = { 0 };
	struct sbuf path, rendered, errs, jerr;
	char *expected = NULL;
	size_t elen = 0;
	bool same = false;
	cJSON *json;

	sbuf_init(&path);
	sbuf_init(&rendered);
	sbuf_init(&errs);
	sbuf_init(&jerr);
	sbuf_addf(&path, "%s/%s.json", dir, name);
	if (!(json = render_read_json(sbuf_str(&path), &jerr))) {
		fprintf(out, "%s: %s\n", name, sbuf_str(&jerr));
		goto cleanup;
	}
	render_batch(m, rel, kind, json, today, &rendered, &errs, &st);
	sbuf_reset(&path);
	sbuf_addf(&path, "%s/%s.ldif", dir, name);
	expected = read_text(sbuf_str(&path), &elen);
	if (errs.len)
		fprintf(out, "%s: %s", name, sbuf_str(&errs));
	if (!expected)
		fprintf(out, "%s: cannot read %s: %s\n", name, sbuf_str(&path), strerror(errno));
	else if (elen == rendered.len && memcmp(expected, sbuf_str(&rendered), elen) == 0 && !errs.len)
		same = fprintf(out, "%s: ok\n", name) > 0;
	else
		show_diff(sbuf_str(&path), name, sbuf_str(&rendered), rendered.len, out);
cleanup:
	free(expected);
	cJSON_Delete(json);
	sbuf_free(&path);
	sbuf_free(&rendered);
	sbuf_free(&errs);
	sbuf_free(&jerr);
	return same;
}

int render_fixtures(const struct mapping *m, const char *dir, const char *today, FILE *out, struct sbuf *err)
{
	struct related *rel = NULL;
	unsigned need = related_needs(m);
	char **names = NULL;
	size_t n = 0, ok = 0, cases = 0;
	int rc = -1;

	if (fixture_names(dir, &names, &n, err) < 0 || (need && related_load_files(dir, need, &rel, err) < 0))
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		char file[512];
		snprintf(file, sizeof(file), "%s.json", names[i]);
		if (related_is_file(file))
			continue; /* the related records the others read */
		cases++;
		ok += one_fixture(m, rel, dir, names[i], today, out);
	}
	fprintf(out, "%zu fixtures: %zu ok, %zu differ\n", cases, ok, cases - ok);
	rc = ok < cases ? 1 : 0;
cleanup:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	related_free(rel);
	return rc;
}
