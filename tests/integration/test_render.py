"""`render` and `check --fixtures`: golden output byte for byte, the shipped
profiles' fixtures, errors by place, and rendered LDIF accepted as it is by a
real slapd."""

import json
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import TOP_SRCDIR, AgentDir, run_agent  # noqa: E402
from slapd import Slapd, parse_ldif  # noqa: E402

NOW = {"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}
EXAMPLE_MAPPING = os.path.join(TOP_SRCDIR, "examples", "mapping.yaml")
FACTORIAL = os.path.join(TOP_SRCDIR, "tests", "fixtures", "factorial")
GOLDEN = os.path.join(TOP_SRCDIR, "tests", "golden")
NAMES = os.path.join(TOP_SRCDIR, "tests", "fixtures", "names")
PROFILES = ("openldap-inetorgperson", "openldap-posix", "openldap-sites", "389ds-inetorgperson", "active-directory")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def render(*args, input=None, env=NOW):
    return run_agent("render", *args, input=input, env=env)


class TestGolden(unittest.TestCase):
    def test_example_mapping_employees(self):
        r = render("-m", EXAMPLE_MAPPING, os.path.join(FACTORIAL, "employees.json"))
        self.assertEqual(r.stdout, read(os.path.join(GOLDEN, "example-employees.ldif")))
        # the records that cannot be mapped are named, the rest still render
        self.assertEqual(r.stderr.splitlines(), [
            'factorial-ldap-agent: employee 10: mail: required, but "{login_email|lower}" is empty: login_email is '
            'null (Factorial sends such fields null to a token of a user who is not an administrator)',
        ])
        # names in Han and Cyrillic script get ASCII uids
        self.assertIn("uid: xiao-ming.wang\n", r.stdout)
        self.assertIn("uid: dmitrij.ivanov\n", r.stdout)
        self.assertEqual(r.returncode, 1)

    def test_example_mapping_teams(self):
        r = render("-m", EXAMPLE_MAPPING, "--kind", "team", os.path.join(FACTORIAL, "teams.json"))
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, read(os.path.join(GOLDEN, "example-teams.ldif")))
        self.assertIn("# team 1: member: employee 1 could not be resolved; left out\n", r.stdout)
        self.assertIn("member: cn=nobody\n", r.stdout)

    def test_latin_names_render_as_before_but_for_letters_once_dropped(self):
        # a changed uid is a rename in the directory: every filter that touches characters, over
        # real Latin-script names and every letter of the Latin blocks, renders as it did before
        # the filters used ICU (names-latin-before-icu.ldif), except where a letter used to be
        # dropped and now has its ASCII form (the list in docs/mapping.md)
        once_dropped = set("ﬁƀƁƂƃƉƊƋƌƐƓƕƖƗƚƝƟƢƣƦƮƲǢǣǶǼǽǾǿȡȤȥȴȵȶȷȸȹȺȻȼȽȾȿɀɃɄɆɇɈɉɌɍɎɏẜẝỺỻỼỽỾỿ")
        r = render("-m", os.path.join(NAMES, "filters.yaml"), os.path.join(NAMES, "latin.json"))
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, read(os.path.join(GOLDEN, "names-latin.ldif")))
        people = {p["id"]: p for p in json.loads(read(os.path.join(NAMES, "latin.json")))}
        before = read(os.path.join(GOLDEN, "names-latin-before-icu.ldif")).split("\n\n")
        after = r.stdout.split("\n\n")
        self.assertEqual(len(before), len(after))
        changed = 0
        for b, a in zip(before, after):
            if b == a:
                continue
            changed += 1
            p = people[int(re.search(r"^employeeNumber: (\d+)$", b, re.M).group(1))]
            self.assertTrue(set(p["full_name"]) & once_dropped, f"{p['full_name']} renders differently:\n{b}\n{a}")
        self.assertEqual(changed, len(once_dropped))

    def test_names_in_every_script_give_an_ascii_uid(self):
        r = render("-m", os.path.join(NAMES, "filters.yaml"), os.path.join(NAMES, "scripts.json"))
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, read(os.path.join(GOLDEN, "names-scripts.ldif")))
        uids = re.findall(r"^uid: (.*)$", r.stdout, re.M)
        self.assertEqual(len(uids), len(json.loads(read(os.path.join(NAMES, "scripts.json")))))
        for uid in uids:
            self.assertRegex(uid, r"^[a-z0-9-]+\.[a-z0-9-]+$")

    def test_example_payloads_match_their_ldif(self):
        r = run_agent("check", "-m", EXAMPLE_MAPPING, "--fixtures", os.path.join(TOP_SRCDIR, "examples", "payloads"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(r.stdout.endswith("5 fixtures: 5 ok, 0 differ\n"), r.stdout)
        # the Active Directory example: its deliveries through the shipped profile
        r = run_agent("check", "-m", os.path.join(TOP_SRCDIR, "mappings", "active-directory.yaml"), "--fixtures",
                      os.path.join(TOP_SRCDIR, "examples", "active-directory", "payloads"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(r.stdout.endswith("5 fixtures: 5 ok, 0 differ\n"), r.stdout)

    def test_example_configurations_check(self):
        # both complete examples pass `check` once their secrets exist (as the site makes them)
        d = tempfile.mkdtemp()
        try:
            for name, src in (("openldap", "agent.yaml"), ("active-directory", "active-directory/agent.yaml")):
                folder = os.path.join(d, name)
                os.makedirs(folder)
                with open(os.path.join(TOP_SRCDIR, "examples", src)) as f:
                    text = f.read()
                text = (text.replace("/usr/share/factorial-ldap-agent/mappings/", os.path.join(TOP_SRCDIR, "mappings") + "/")
                        .replace("mapping: mapping.yaml", f"mapping: {EXAMPLE_MAPPING}")
                        .replace("/var/lib/factorial-ldap-agent", os.path.join(folder, "state"))
                        .replace("/etc/ssl/certs/example-test-ca.pem", "/etc/ssl/certs/ca-certificates.crt"))
                with open(os.path.join(folder, "agent.yaml"), "w") as f:
                    f.write(text)
                for secret in ("api-key", "challenge", "ldap-password"):
                    path = os.path.join(folder, secret)
                    with open(path, "w") as f:
                        f.write("x\n")
                    os.chmod(path, 0o600)
                r = run_agent("-c", os.path.join(folder, "agent.yaml"), "check")
                self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "configuration ok\n", ""), name)
        finally:
            shutil.rmtree(d)

    def test_shipped_profiles_and_their_fixtures(self):
        for p in PROFILES:
            r = run_agent("check", "-m", os.path.join(TOP_SRCDIR, "mappings", p + ".yaml"),
                          "--fixtures", os.path.join(TOP_SRCDIR, "mappings", "fixtures", p))
            self.assertEqual(r.returncode, 0, p + ": " + r.stdout + r.stderr)
            self.assertTrue(r.stdout.startswith(f"mapping {TOP_SRCDIR}/mappings/{p}.yaml: ok (no configuration "
                                                "checked)\n"), r.stdout)
            self.assertRegex(r.stdout, r"\n(\d+) fixtures: \1 ok, 0 differ\n$")


class TestRenderDetails(unittest.TestCase):
    def setUp(self):
        self.d = AgentDir()

    def tearDown(self):
        self.d.close()

    def mapping(self, extra_attrs="", terminated="", scope=""):
        return self.d.file("m.yaml", f"""version: 1
employees:
  base: ou=people,dc=example,dc=com
  key: {{ attribute: employeeNumber, value: "{{id}}" }}
  rdn: uid
  object_classes: [inetOrgPerson]
{scope}  attributes:
    uid: {{ value: "{{first_name|slug}}.{{last_name|slug}}", unique: true }}
    cn: "{{full_name}}"
    sn: "{{last_name}}"
{extra_attrs}{terminated}""")

    def test_stdin_single_object_and_base64(self):
        m = self.mapping('    description: "{note}"\n')
        r = render("-m", m, "-", input='{"id": 1, "first_name": "Ana", "last_name": "Pérez", '
                                        '"full_name": " Ana", "note": ":colon"}')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "dn: uid=ana.perez,ou=people,dc=example,dc=com\n"
                                   "objectClass: inetOrgPerson\n"
                                   "employeeNumber: 1\n"
                                   "uid: ana.perez\n"
                                   "cn:: IEFuYQ==\n"
                                   "sn:: UMOpcmV6\n"
                                   "description:: OmNvbG9u\n\n")

    def test_three_ana_garcia_get_distinct_uids(self):
        m = self.mapping()
        recs = ",".join(f'{{"id": {i}, "first_name": "Ana", "last_name": "García", "full_name": "Ana García"}}'
                        for i in (1, 2, 3))
        r = render("-m", m, "-", input=f"[{recs}]")
        self.assertEqual(r.returncode, 0, r.stderr)
        uids = [line for line in r.stdout.splitlines() if line.startswith("uid: ")]
        self.assertEqual(uids, ["uid: ana.garcia", "uid: ana.garcia2", "uid: ana.garcia3"])

    def test_out_of_scope_and_deleted_are_comments(self):
        m = self.mapping(scope="  only_if: { legal_entity_id: [1, 2] }\n",
                         terminated="  terminated: { action: delete }\n")
        r = render("-m", m, "-", input='[{"id": 42, "legal_entity_id": 3, "first_name": "a", "last_name": "b"},'
                                        ' {"id": 43, "legal_entity_id": 1, "first_name": "c", "last_name": "d",'
                                        '  "full_name": "c d", "terminated_on": "2026-01-31"}]')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout,
                         "# employee 42: out of scope (legal_entity_id 3 is not in 1, 2)\n\n"
                         "# employee 43: terminated on 2026-01-31; the entry uid=c.d,ou=people,dc=example,dc=com "
                         "is deleted (terminated.action: delete)\n\n")

    def test_future_termination_renders_active_until_the_day(self):
        m = self.mapping(terminated="  terminated:\n    action: disable\n    attributes: { description: gone }\n")
        rec = '{"id": 5, "first_name": "a", "last_name": "b", "full_name": "a b", "terminated_on": "2026-12-01"}'
        before = render("-m", m, "-", input=rec, env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-30"})
        on_day = render("-m", m, "-", input=rec, env={"FACTORIAL_LDAP_AGENT_NOW": "2026-12-01T09:00:00"})
        self.assertNotIn("description", before.stdout)
        self.assertNotIn("terminated", before.stdout)
        self.assertIn("# employee 5: terminated on 2026-12-01 (terminated.action: disable)\n", on_day.stdout)
        self.assertIn("description: gone\n", on_day.stdout)

    def test_bad_json_file_is_named_and_others_still_render(self):
        m = self.mapping()
        bad = self.d.file("bad.json", '[{"id": 1,\n  "first_name": x}]')
        good = self.d.file("good.json", '{"id": 2, "first_name": "B", "last_name": "C", "full_name": "B C"}')
        r = render("-m", m, bad, good)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, f"factorial-ldap-agent: {bad}:2:17: not valid JSON\n")
        self.assertIn("dn: uid=b.c,ou=people,dc=example,dc=com\n", r.stdout)

    def test_invalid_utf8_is_a_record_error(self):
        m = self.mapping()
        p = os.path.join(self.d.path, "latin1.json")
        with open(p, "wb") as f:
            f.write(b'[{"id": 7, "first_name": "Jos\xe9", "last_name": "N", "full_name": "x"},'
                    b' {"id": 8, "first_name": "Ok", "last_name": "Fine", "full_name": "Ok Fine"}]')
        r = render("-m", m, p)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "factorial-ldap-agent: employee 7: field first_name is not valid UTF-8\n")
        self.assertIn("uid: ok.fine\n", r.stdout)

    def test_mapping_errors_are_usage_errors(self):
        m = self.d.file("broken.yaml", "version: 1\nemployees:\n  base: ou=people,dc=example,dc=com\n"
                                       "  key: { attribute: employeeNumber, value: \"{id|nope}\" }\n")
        r = render("-m", m, "-", input="{}")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr, f"{m}:3:3: employees.object_classes: required key is missing\n"
                                   f"{m}:3:3: employees.rdn: required key is missing\n"
                                   f"{m}:3:3: employees.attributes: required key is missing\n"
                                   f"{m}:4:49: employees.key.value: unknown filter \"nope\"\n")
        r = render("-m", "/nonexistent/m.yaml", "-", input="{}")
        self.assertEqual((r.returncode, r.stderr), (2, "/nonexistent/m.yaml: cannot read: No such file or directory\n"))
        r = render("-m", m, "--kind", "group", "-", input="{}")
        self.assertEqual(r.returncode, 2)

    def test_render_uses_the_configured_mapping(self):
        cfg = self.d.standard()
        r = run_agent("-c", cfg, "render", "-", input='{"id": 1, "first_name": "Ana", "last_name": "B",'
                                                       ' "full_name": "Ana B", "login_email": "A@x.com"}',
                      env=NOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("mail: a@x.com\n", r.stdout)


class TestRelatedOffline(unittest.TestCase):
    """{location.name} offline: locations.json and legal_entities.json from --related DIR, or
    from the folder of each FILE; a location they lack gives no value."""

    def test_related_files(self):
        d = tempfile.mkdtemp()
        try:
            m = os.path.join(d, "m.yaml")
            with open(m, "w") as f:
                f.write(read(EXAMPLE_MAPPING).replace("    cn: \"{full_name}\"\n",
                                                       "    cn: \"{full_name}\"\n    l: \"{location.name}\"\n", 1))
            people = [{"id": 1, "first_name": "Ana", "last_name": "Loc", "full_name": "Ana Loc",
                       "login_email": "ana@example.com", "location_id": 1},
                      {"id": 2, "first_name": "Bo", "last_name": "Loc", "full_name": "Bo Loc",
                       "login_email": "bo@example.com", "location_id": 5}]
            with open(os.path.join(d, "people.json"), "w") as f:
                json.dump(people, f)
            with open(os.path.join(d, "locations.json"), "w") as f:
                json.dump([{"id": 1, "name": "Madrid HQ"}], f)
            r = render("-m", m, os.path.join(d, "people.json"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("cn: Ana Loc\nl: Madrid HQ\n", r.stdout)
            self.assertIn("cn: Bo Loc\n", r.stdout)
            self.assertEqual(len(re.findall(r"^l: ", r.stdout, re.M)), 1)
            # --related names another folder; standard input reads none from its own
            other = os.path.join(d, "other")
            os.mkdir(other)
            with open(os.path.join(other, "locations.json"), "w") as f:
                json.dump([{"id": 1, "name": "Elsewhere"}, {"id": 5, "name": "Lisbon"}], f)
            r = render("-m", m, "--related", other, "-", input=json.dumps(people))
            self.assertIn("cn: Ana Loc\nl: Elsewhere\n", r.stdout)
            self.assertIn("cn: Bo Loc\nl: Lisbon\n", r.stdout)
            # a broken file is said
            with open(os.path.join(other, "locations.json"), "w") as f:
                f.write("{}")
            r = render("-m", m, "--related", other, os.path.join(d, "people.json"))
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"render: {other}/locations.json: expected a JSON array of location records", r.stderr)
        finally:
            shutil.rmtree(d)


class TestCookbookMappingLanguage(unittest.TestCase):
    """The cookbook entries of docs/mapping.md for placement, groups by rule, alternatives and
    related records, as written there, in a mapping that renders."""

    def block_after(self, doc, title):
        part = doc[doc.index(title):]
        return part[part.index("```yaml\n") + 8:part.index("```\n", part.index("```yaml\n") + 8)]

    def test_entries_render(self):
        doc = read(os.path.join(TOP_SRCDIR, "docs", "mapping.md"))
        country = self.block_after(doc, "**One OU per country.**")
        office = self.block_after(doc, "**A group per office, a group for one legal entity.**")
        preferred = self.block_after(doc, "**Preferred name when there is one.**")
        office_name = self.block_after(doc, "**The office's name from Factorial.**")
        mapping = (office.split("groups:\n")[0] +
                   "employees:\n" + country.split("employees:\n")[1] +
                   "  key: { attribute: employeeNumber, value: \"{id}\" }\n  rdn: uid\n"
                   "  object_classes: [inetOrgPerson]\n  attributes:\n    uid: \"{first_name|lower}\"\n"
                   "    sn: \"{last_name}\"\n    cn: \"{first_name} {last_name}\"\n" + preferred + office_name +
                   "groups:\n" + office.split("groups:\n")[1])
        d = tempfile.mkdtemp()
        try:
            with open(os.path.join(d, "m.yaml"), "w") as f:
                f.write("version: 1\n" + mapping)
            with open(os.path.join(d, "legal_entities.json"), "w") as f:
                json.dump([{"id": 2, "legal_name": "Example France SAS", "country": "FR"}], f)
            with open(os.path.join(d, "locations.json"), "w") as f:
                json.dump([{"id": 2, "name": "Paris Office"}], f)
            with open(os.path.join(d, "people.json"), "w") as f:
                json.dump([{"id": 1, "first_name": "Ana", "last_name": "Gil", "preferred_name": "Anita",
                            "location_id": 2, "legal_entity_id": 2},
                           {"id": 2, "first_name": "Bo", "last_name": "Gil", "location_id": 9, "legal_entity_id": 1}], f)
            r = render("-m", os.path.join(d, "m.yaml"), os.path.join(d, "people.json"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("dn: uid=ana,ou=fr,ou=people,dc=example,dc=com\n", r.stdout)
            self.assertIn("dn: uid=bo,ou=other,ou=people,dc=example,dc=com\n", r.stdout)
            self.assertIn("displayName: Anita Gil\n", r.stdout)
            self.assertIn("displayName: Bo Gil\n", r.stdout)
            self.assertIn("physicalDeliveryOfficeName: Paris Office\n", r.stdout)
            self.assertIn("physicalDeliveryOfficeName: Remote\n", r.stdout)
            self.assertIn("dn: cn=office-paris,ou=groups,dc=example,dc=com\n", r.stdout)
            self.assertIn("dn: cn=office-remote,ou=groups,dc=example,dc=com\n", r.stdout)
            self.assertIn("dn: cn=staff-fr,ou=groups,dc=example,dc=com\nobjectClass: top\nobjectClass: groupOfNames\n"
                          "cn: staff-fr\nbusinessCategory: factorial-group-france\n"
                          "member: uid=ana,ou=fr,ou=people,dc=example,dc=com\n", r.stdout)
        finally:
            shutil.rmtree(d)


class TestFixtureMismatch(unittest.TestCase):
    def test_mismatch_shows_a_unified_diff(self):
        src = os.path.join(TOP_SRCDIR, "mappings", "fixtures", "openldap-inetorgperson")
        d = tempfile.mkdtemp(prefix="fla-fixtures-")
        try:
            for n in os.listdir(src):
                shutil.copy(os.path.join(src, n), d)
            p = os.path.join(d, "leavers.ldif")
            text = read(p).replace("mail: oyvind.aero@example.com", "mail: someone@example.com")
            with open(p, "w", encoding="utf-8") as f:
                f.write(text)
            r = run_agent("check", "-m", os.path.join(TOP_SRCDIR, "mappings", "openldap-inetorgperson.yaml"),
                          "--fixtures", d)
            self.assertEqual(r.returncode, 1)
            self.assertIn("--- leavers.ldif (expected)\n+++ leavers.ldif (rendered)\n", r.stdout)
            self.assertIn("\n-mail: someone@example.com\n+mail: oyvind.aero@example.com\n", r.stdout)
            self.assertIn("people: ok\n", r.stdout)
            self.assertTrue(r.stdout.endswith("4 fixtures: 3 ok, 1 differ\n"), r.stdout)
        finally:
            shutil.rmtree(d)


class TestRenderedLdifLoadsIntoSlapd(unittest.TestCase):
    """What render prints is what a directory accepts: ldapadd takes it as it
    is, and the entries read back hold exactly the rendered values."""

    def test_profiles_load(self):
        with Slapd() as s:
            for p in ("openldap-inetorgperson", "openldap-posix"):
                ldif = render("-m", os.path.join(TOP_SRCDIR, "mappings", p + ".yaml"),
                              os.path.join(TOP_SRCDIR, "mappings", "fixtures", p, "people.json")).stdout
                s.add(ldif, admin=False)
                want = parse_ldif(ldif)
                for dn, attrs in want.items():
                    got = s.entry(dn)
                    self.assertIsNotNone(got, dn)
                    for a, vals in attrs.items():
                        self.assertEqual(sorted(got[a]), sorted(vals), f"{p} {dn} {a}")
                # move the people away so the second profile starts from an empty ou
                for dn in want:
                    s.modify(f"dn: {dn}\nchangetype: delete\n")
            self.assertEqual(len(s.search("ou=people,dc=example,dc=com", scope="one", attrs=["1.1"])), 0)


if __name__ == "__main__":
    taprunner.main()
