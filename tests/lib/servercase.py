"""ServersCase: the servers most integration tests stand on, one set per test.

Each test gets a slapd of its own (self.ldap), a fake Factorial (self.fake)
and an agent folder (self.d) holding the class's mapping as mapping.yaml;
all three are stopped and removed after the test, whatever its outcome.
A subclass sets `mapping` and may override `slapd_options()`."""

import unittest

from agenttest import AgentDir
from fakefactorial import FakeFactorial
from slapd import Slapd


class ServersCase(unittest.TestCase):
    mapping = None

    def slapd_options(self):
        return {}

    def setUp(self):
        self.ldap = Slapd(**self.slapd_options()).start()
        self.addCleanup(self.ldap.stop)
        self.fake = FakeFactorial(fixtures=None).start()
        self.addCleanup(self.fake.stop)
        self.d = AgentDir()
        self.addCleanup(self.d.close)
        if self.mapping is not None:
            self.d.file("mapping.yaml", self.mapping)
