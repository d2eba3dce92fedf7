"""Runs the unittest tests of the calling module and reports them as TAP.

Each test file ends with `taprunner.main()`.  Results are printed as they
come ("ok N - name" / "not ok N - name" with the traceback as comments) and
the plan is printed last, so a failing setUpModule still shows as a failure.
automake's tap-driver.sh reads this output.  The exit code is 1 when anything
failed.
"""

import sys
import time
import unittest


class _TapResult(unittest.TestResult):
    def __init__(self, out):
        super().__init__()
        self.out = out
        self.n = 0
        self.started = {}

    def _name(self, test):
        tid = test.id()
        parts = tid.split(".")
        return ".".join(parts[-2:]) if len(parts) >= 2 else tid

    def _emit(self, ok, test, detail=None, directive=""):
        self.n += 1
        line = f"{'ok' if ok else 'not ok'} {self.n} - {self._name(test)}"
        if directive:
            line += f" # {directive}"
        print(line, file=self.out)
        if detail:
            for dl in detail.rstrip().splitlines():
                print(f"# {dl}", file=self.out)
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        self.started[test.id()] = time.monotonic()

    def addSuccess(self, test):
        super().addSuccess(test)
        self._emit(True, test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._emit(False, test, self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._emit(False, test, self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        # A skipped test is not a pass: it is reported as a failure.
        super().addSkip(test, reason)
        self._emit(False, test, f"skipped: {reason}")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._emit(False, test, "expected failures are not allowed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._emit(False, test, "unexpected success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._emit(False, subtest, self._exc_info_to_string(err, test))


def main(module="__main__"):
    mod = sys.modules[module]
    suite = unittest.TestLoader().loadTestsFromModule(mod)
    if len(sys.argv) > 1:
        wanted = set(sys.argv[1:])
        flat = []

        def walk(s):
            for t in s:
                if isinstance(t, unittest.TestSuite):
                    walk(t)
                elif wanted & {t.id().split(".")[-1], t.id().split(".")[-2], ".".join(t.id().split(".")[-2:])}:
                    flat.append(t)
        walk(suite)
        suite = unittest.TestSuite(flat)
    result = _TapResult(sys.stdout)
    suite.run(result)
    if result.n == 0:
        print("not ok 1 - no test ran")
        result.n = 1
        print(f"1..{result.n}")
        sys.exit(1)
    print(f"1..{result.n}")
    sys.exit(0 if result.wasSuccessful() and not result.skipped else 1)
