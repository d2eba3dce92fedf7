/* Unit tests of yamldoc: nodes with their places, mistakes by place. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/yamldoc.h"
#include "testutil.h"

/* The first mistake diag holds, formatted, with the folder left out. */
static void first_mistake(struct diag *d, char *buf, size_t len)
{
	char line[512];

	assert_true(diag_count(d) > 0);
	diag_format(d, 0, line, sizeof(line));
	snprintf(buf, len, "%s", strstr(line, "y.yaml"));
}

static void test_nodes_and_places(void **state)
{
	char *p = tu_write(tu_dir, "y.yaml", 0644, "a: 1\nb:\n  - x\n  - \"y\"\nc: ~\nd:\n");
	yaml_node_t *root, *v;
	struct ydoc y = { 0 };
	struct diag d;

	(void)state;
	diag_init(&d);
	assert_int_equal(ydoc_load_file(&y, p, &d), 0);
	root = ydoc_root(&y);
	assert_non_null(root);
	assert_string_equal(ydoc_kind(root), "a mapping");
	v = ydoc_node(&y, root->data.mapping.pairs.start[1].value);
	assert_string_equal(ydoc_kind(v), "a list");
	assert_int_equal(ydoc_line(v), 3);
	assert_int_equal(ydoc_col(v), 3);
	v = ydoc_node(&y, v->data.sequence.items.start[1]);
	assert_string_equal(ydoc_scalar(v), "y");
	assert_false(ydoc_is_plain(v));
	assert_true(ydoc_is_null(ydoc_node(&y, root->data.mapping.pairs.start[2].value)));
	assert_true(ydoc_is_null(ydoc_node(&y, root->data.mapping.pairs.start[3].value)));
	assert_false(ydoc_is_null(ydoc_node(&y, root->data.mapping.pairs.start[0].value)));
	ydoc_free(&y);
	diag_free(&d);
	free(p);
}

static void test_mistakes_by_place(void **state)
{
	char *p = tu_write(tu_dir, "y.yaml", 0644, "a: 1\nb: [1, 2\n");
	struct ydoc y = { 0 };
	struct diag d;
	char got[512];

	(void)state;
	diag_init(&d);
	assert_int_equal(ydoc_load_file(&y, p, &d), -1);
	first_mistake(&d, got, sizeof(got));
	assert_non_null(strstr(got, "y.yaml:3:1:"));
	ydoc_free(&y);
	diag_free(&d);
	free(p);

	p = tu_write(tu_dir, "y.yaml", 0644, "\n# nothing\n");
	diag_init(&d);
	assert_int_equal(ydoc_load_file(&y, p, &d), -1);
	first_mistake(&d, got, sizeof(got));
	assert_non_null(strstr(got, "the file is empty"));
	ydoc_free(&y);
	diag_free(&d);
	free(p);

	p = tu_write(tu_dir, "y.yaml", 0644, "a: 1\nb: 2\na: 3\n");
	diag_init(&d);
	assert_int_equal(ydoc_load_file(&y, p, &d), 0);
	assert_int_equal(ydoc_check_duplicates(&y, &d, ydoc_root(&y), ""), 1);
	first_mistake(&d, got, sizeof(got));
	assert_non_null(strstr(got, "y.yaml:3:1: a:"));
	ydoc_error(&y, &d, ydoc_node(&y, ydoc_root(&y)->data.mapping.pairs.start[1].value), "b", "bad %d", 2);
	assert_int_equal(diag_count(&d), 2);
	ydoc_free(&y);
	diag_free(&d);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nodes_and_places),
		cmocka_unit_test(test_mistakes_by_place),
	};
	return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
