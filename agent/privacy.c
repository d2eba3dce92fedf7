/* privacy: see privacy.h. */
#include "build.h"

#include "privacy.h"

#include <ctype.h>
#include <string.h>

/* The one table of what is never kept, by folded name (lower case, without
 * separators): a row matches a name equal to it (EXACT), one whose first
 * word or words it is (FAMILY: bank_number, bankName, not banking), or one
 * that holds it anywhere (ANYWHERE: employee_iban). */
enum match { EXACT, FAMILY, ANYWHERE };

static const struct {
	const char *folded;
	enum match match;
} sensitive[] = {
	/* bank details */
	{ "bank", FAMILY },             /* bank_number, bank_account_..., bank_name, bankNumber */
	{ "iban", ANYWHERE },
	{ "swift", FAMILY },            /* swift_bic */
	{ "bic", EXACT },
	{ "accountnumber", ANYWHERE },
	{ "routingnumber", ANYWHERE },
	/* payment cards */
	{ "card", FAMILY },             /* card_number, card_expiry */
	{ "creditcard", ANYWHERE },
	{ "debitcard", ANYWHERE },
	{ "cardnumber", ANYWHERE },
	/* national and social security ids, tax ids */
	{ "socialsecurity", ANYWHERE }, /* social_security_number, ..._type */
	{ "ssn", EXACT },
	{ "identifier", EXACT },        /* Factorial's national id number */
	{ "identifiertype", EXACT },
	{ "identifierexpirationdate", EXACT },
	{ "nationalid", ANYWHERE },
	{ "tax", FAMILY },              /* tax_id, tax_identification_number, taxId */
	{ "taxid", ANYWHERE },          /* company_tax_id */
	{ "nif", EXACT },
	{ "passport", FAMILY },
	/* pay */
	{ "salary", FAMILY },           /* salary_amount, salary_currency, ... */
	{ "basecompensation", FAMILY },
	{ "compensation", FAMILY },
	/* health and emergency contacts */
	{ "disability", FAMILY },       /* disability_percentage_cents */
	{ "emergency", FAMILY },        /* emergency_contact_... */
	{ "contactname", EXACT },       /* Factorial's emergency contact */
	{ "contactnumber", EXACT },
};

struct folded {
	char text[128];
	size_t from[128]; /* where each folded character stands in the name */
	size_t n;
};

static bool is_separator(unsigned char c)
{
	return c == '_' || c == '-' || c == '.' || c == ' ' || c == '\0';
}

/* name folded: ASCII letters in lower case, without separators ('_', '-',
 * '.', spaces, NUL); other bytes kept.  Returns false when it does not fit. */
static bool fold(const char *name, size_t len, struct folded *f)
{
	f->n = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (is_separator(c))
			continue;
		if (f->n + 1 >= sizeof(f->text))
			return false;
		f->from[f->n] = i;
		f->text[f->n++] = (char)tolower(c);
	}
	f->text[f->n] = '\0';
	return true;
}

/* Whether a word of the name ends after its first k folded characters: the
 * name ends there, or a separator or a capital letter after a small one
 * (bank_number, bankNumber) follows; "banking" is no bank field. */
static bool word_ends(const char *name, const struct folded *f, size_t k)
{
	size_t at;

	if (k >= f->n)
		return true;
	at = f->from[k];
	if (at > 0 && is_separator((unsigned char)name[at - 1]))
		return true;
	return at > 0 && isupper((unsigned char)name[at]) && islower((unsigned char)name[at - 1]);
}

bool privacy_sensitive_n(const char *name, size_t len)
{
	struct folded f;

	if (!fold(name, len, &f))
		return false; /* no field of the table is that long */
	for (size_t i = 0; i < sizeof(sensitive) / sizeof(sensitive[0]); i++) {
		const char *s = sensitive[i].folded;
		size_t n = strlen(s);
		switch (sensitive[i].match) {
		case EXACT:
			if (strcmp(f.text, s) == 0)
				return true;
			break;
		case FAMILY:
			if (strncmp(f.text, s, n) == 0 && word_ends(name, &f, n))
				return true;
			break;
		case ANYWHERE:
			if (strstr(f.text, s))
				return true;
			break;
		}
	}
	return false;
}

bool privacy_sensitive(const char *name)
{
	return privacy_sensitive_n(name, strlen(name));
}

int privacy_scrub(cJSON *j)
{
	cJSON *c, *next;
	int n = 0;

	if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
		return 0;
	for (c = j->child; c; c = next) {
		next = c->next;
		if (cJSON_IsObject(j) && c->string && privacy_sensitive(c->string)) {
			cJSON_Delete(cJSON_DetachItemViaPointer(j, c));
			n++;
		} else {
			n += privacy_scrub(c);
		}
	}
	return n;
}

/* Whether text[i..] starts a \u0000 escape (a NUL character). */
static bool nul_escape(const char *text, size_t len, size_t i)
{
	return i + 5 < len && text[i + 1] == 'u' && text[i + 2] == '0' && text[i + 3] == '0' && text[i + 4] == '0' &&
	       text[i + 5] == '0';
}

bool privacy_has_nul(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\0')
			return true;
		if (text[i] == '\\') {
			if (nul_escape(text, len, i))
				return true;
			i++; /* the escaped character: "\\u0000" is a backslash and text */
		}
	}
	return false;
}
