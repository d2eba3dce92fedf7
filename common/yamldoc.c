#include "build.h"

#include "common/yamldoc.h"
#include "common/strmap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ydoc_load_file(struct ydoc *y, const char *path, struct diag *d)
{
	yaml_parser_t parser;
	bool parser_ready = false;
	FILE *fp = NULL;
	int rc = -1;

	memset(y, 0, sizeof(*y));
	y->file = strdup(path);
	if (!y->file) {
		diag_add(d, path, 0, 0, NULL, "out of memory");
		goto cleanup;
	}
	fp = fopen(path, "rb");
	if (!fp) {
		diag_add(d, path, 0, 0, NULL, "cannot read: %s", strerror(errno));
		goto cleanup;
	}
	{
		struct stat st;
		if (fstat(fileno(fp), &st) == 0 && !S_ISREG(st.st_mode)) {
			diag_add(d, path, 0, 0, NULL, "cannot read: %s", S_ISDIR(st.st_mode) ? "it is a folder" : "not a regular file");
			goto cleanup;
		}
	}
	if (!yaml_parser_initialize(&parser)) {
		diag_add(d, path, 0, 0, NULL, "out of memory");
		goto cleanup;
	}
	parser_ready = true;
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &y->doc)) {
		const char *problem = parser.problem ? parser.problem : "cannot parse";
		if (parser.context)
			diag_add(d, path, (unsigned)parser.problem_mark.line + 1,
			         (unsigned)parser.problem_mark.column + 1, NULL,
			         "YAML syntax error: %s %s", problem, parser.context);
		else
			diag_add(d, path, (unsigned)parser.problem_mark.line + 1,
			         (unsigned)parser.problem_mark.column + 1, NULL,
			         "YAML syntax error: %s", problem);
		goto cleanup;
	}
	y->loaded = true;
	if (!yaml_document_get_root_node(&y->doc)) {
		diag_add(d, path, 0, 0, NULL, "the file is empty");
		goto cleanup;
	}
	rc = 0;
cleanup:
	if (parser_ready)
		yaml_parser_delete(&parser);
	if (fp)
		fclose(fp);
	return rc;
}

void ydoc_free(struct ydoc *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	free(y->file);
	memset(y, 0, sizeof(*y));
}

yaml_node_t *ydoc_root(struct ydoc *y)
{
	return y->loaded ? yaml_document_get_root_node(&y->doc) : NULL;
}

yaml_node_t *ydoc_node(struct ydoc *y, int id)
{
	return yaml_document_get_node(&y->doc, id);
}

unsigned ydoc_line(const yaml_node_t *n)
{
	return (unsigned)n->start_mark.line + 1;
}

unsigned ydoc_col(const yaml_node_t *n)
{
	return (unsigned)n->start_mark.column + 1;
}

const char *ydoc_scalar(const yaml_node_t *n)
{
	return (n && n->type == YAML_SCALAR_NODE) ? (const char *)n->data.scalar.value : NULL;
}

bool ydoc_is_plain(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool ydoc_is_null(const yaml_node_t *n)
{
	const char *s;

	if (!ydoc_is_plain(n))
		return false;
	s = ydoc_scalar(n);
	return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	       strcmp(s, "NULL") == 0;
}

const char *ydoc_kind(const yaml_node_t *n)
{
	switch (n ? n->type : YAML_NO_NODE) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_SCALAR_NODE:
		return ydoc_is_null(n) ? "an empty value" : "a string";
	case YAML_NO_NODE:
		break;
	}
	return "nothing";
}

void ydoc_error(struct ydoc *y, struct diag *d, const yaml_node_t *n, const char *key,
                const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	diag_add(d, y->file, n ? ydoc_line(n) : 0, n ? ydoc_col(n) : 0, key, "%s", msg);
}

int ydoc_check_duplicates(struct ydoc *y, struct diag *d, yaml_node_t *m, const char *path)
{
	struct strmap first; /* key -> the line it was first given on: linear in the keys */
	int found = 0;

	if (!m || m->type != YAML_MAPPING_NODE)
		return 0;
	strmap_init(&first);
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_node(y, p->key);
		const char *ks = ydoc_scalar(k), *line;
		char at[16];
		if (!ks)
			continue;
		if ((line = strmap_get(&first, ks)) != NULL) {
			char full[512];
			if (path && *path)
				snprintf(full, sizeof(full), "%s.%s", path, ks);
			else
				snprintf(full, sizeof(full), "%s", ks);
			ydoc_error(y, d, k, full, "duplicate key (first given on line %s)", line);
			found++;
			continue;
		}
		snprintf(at, sizeof(at), "%u", ydoc_line(k));
		strmap_put(&first, ks, at);
	}
	strmap_free(&first);
	return found;
}
