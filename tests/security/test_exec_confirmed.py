"""An `exec` event names what the kernel actually executed (issue 9 point 4),
read from /proc/<pid>/exe after the exec, not what the caller said: argv[0]
can lie, a path can be a symlink to another program, a script runs its
interpreter. `path`, `exe` and `argv` keep the caller's word; `exe_confirmed`
is the confirmed file, as a path of the sandbox."""

import os

import conftest as c

# argv[0] lies (python's execv), a symlink named like a harmless tool points
# at sleep, a script runs /bin/sh's target
SCRIPT = r'''
set -e
ln -s /usr/bin/sleep /workspace/innocent-ls
/workspace/innocent-ls 0.3
/usr/bin/python3 -c 'import os; os.execv("/usr/bin/sleep", ["/usr/bin/ls", "0.3"])'
printf '#!/bin/sh\nsleep 0.3\n' > /workspace/job.sh
chmod +x /workspace/job.sh
/workspace/job.sh
cp /usr/bin/sleep /workspace/mysleep
/workspace/mysleep 0.3
'''


def test_exec_event_names_the_executed_file(endpoints, admin_token, api, runs):
    run_id, res = c.run_to_end(endpoints, admin_token, runs, c.spec(["/bin/sh", "-c", SCRIPT], timeout_s=60))
    assert res.terminal == "succeeded", (c.terminal_event(res), res.output()[-2000:])
    last = max(e["seq"] for e in res.events)
    events = c.e2e.wait_events_recorded(api, run_id, last)
    ex = [e["data"] for e in events if e["kind"] == "exec"]
    for x in ex:
        print(x)
    real_sleep = "/usr/bin/" + os.path.basename(os.path.realpath("/usr/bin/sleep"))

    link = [x for x in ex if x["path"] == "/workspace/innocent-ls"]
    assert len(link) == 1, ex
    assert link[0]["exe"] == "/workspace/innocent-ls"  # the caller's word
    assert link[0]["exe_confirmed"] == real_sleep, link[0]

    lie = [x for x in ex if x["argv"][:1] == ["/usr/bin/ls"]]
    assert len(lie) == 1, ex
    assert lie[0]["exe_confirmed"] == real_sleep, lie[0]

    script = [x for x in ex if x["path"] == "/workspace/job.sh"]
    assert len(script) == 1, ex
    sh = os.path.realpath("/bin/sh")  # the interpreter the kernel ran (dash on Debian)
    assert script[0]["exe_confirmed"] in (sh, "/usr" + sh), script[0]

    copy = [x for x in ex if x["path"] == "/workspace/mysleep"]
    assert len(copy) == 1 and copy[0]["exe_confirmed"] == "/workspace/mysleep", copy

    # the command itself is confirmed too (ln, chmod and cp may end before a
    # busy node looks: then the field is absent, never wrong)
    assert ex[0]["exe_confirmed"] in (sh, "/usr" + sh), ex[0]
    for x in ex:
        if "exe_confirmed" in x and x["argv"][:1] in (["ln"], ["chmod"], ["cp"]):
            assert x["exe_confirmed"] == "/usr/bin/" + x["argv"][0], x
