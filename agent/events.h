/*
 * events: what each Factorial subscription type means, in one table.
 *
 * One row per type: its name (the subscription type, and the last part of
 * the webhook path), the kind of record its body holds, the action (the
 * last part of the name: "update", "delete", "terminate", ...) and whether
 * the body may be a list (bulk_upsert).  Per kind, the table says how a
 * body names its record and which records it names:
 *
 *   employee    one employee object; record "employee:ID"; it names the
 *               employees its mapping refers to with employee_dn (manager_id)
 *   team        one team object; record "team:ID"; it names the employees
 *               of its member attributes (employee_ids)
 *   membership  {employee_id, team_id}, or a list of them (bare or wrapped
 *               in an object); record "membership:TEAM:EMPLOYEE" (a list
 *               gets a record of its own); it names its employees and teams
 *   contract    a contract version {id, employee_id, effective_on, job_title}:
 *               its employee's record ("employee:ID": it is applied in turn
 *               with that employee's deliveries, by reading the employee)
 *   location    a location {id, name, ...}; record "location:ID": its people
 *               are applied again (their names, OU and rule groups may
 *               read it)
 *
 * The configuration's check of webhooks.subscriptions, the receiver's
 * routes and body checks, the queue's record keys and order, and apply's
 * dispatch all read this table: adding a type is adding a row; a new kind of
 * record adds a row to the kinds below and its handler to apply_delivery.c's table.
 *
 * Memory: the table is static; strings returned are malloc'd for the caller.
 */
#ifndef FLA_EVENTS_H
#define FLA_EVENTS_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "mapping.h"
#include "common/strmap.h"

enum event_kind {
	EVENT_EMPLOYEE,
	EVENT_TEAM,
	EVENT_MEMBERSHIP,
	EVENT_CONTRACT,
	EVENT_LOCATION,
};

struct event_type {
	const char *name;     /* "employees/employee/update" */
	enum event_kind kind;
	const char *action;   /* "update" */
	bool list_body;       /* the body may be a JSON array */
};

/* Every type the agent handles, in the order subscriptions are listed; ends with a NULL name. */
extern const struct event_type event_types[];

const struct event_type *event_find(const char *name);

/* NULL when a body's nesting (at most 64 deep) and value count (at most
 * 100,000) are within bounds, or it is not JSON at all (the parser then
 * says so); else why not, for the 400 answer. */
const char *event_body_out_of_bounds(const char *body, size_t len);
/* "employee", "team", "membership". */
const char *event_kind_name(enum event_kind kind);

/* The record a body holds, as the key that orders its deliveries
 * ("employee:42"); a list, or a body without an id, gets a key of its own. */
char *event_record_key(const struct event_type *t, const cJSON *body);

/* Adds to refs the records the body names (keys as above), which the queue
 * applies first when their deliveries are older; m says which fields of an
 * employee or team refer to employees (NULL: none). */
void event_refs(const struct event_type *t, const cJSON *body, const struct mapping *m, struct strmap *refs);
/* The same for one record of a kind (an employee or a team read from the API). */
void event_kind_refs(enum event_kind kind, const cJSON *record, const struct mapping *m, struct strmap *refs);

/* Calls fn for each membership a membership body holds (one object, or each
 * element of a list, bare or wrapped in an object); stops at the first
 * non-zero result and returns it. */
int event_each_membership(const cJSON *body, int (*fn)(void *ctx, const cJSON *membership), void *ctx);

#endif
