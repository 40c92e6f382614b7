#!/usr/bin/env python3
"""A fake Slurm for the helper's unit tests: sbatch, squeue, scontrol, scancel, sacct, sinfo,
sacctmgr and sstat (a running job's "use": {"cpu", "rss", "peak", "gpuutil"}, Slurm's words).

Symlinked under those names into a bin dir on PATH. The cluster is a JSON file
($FAKE_SLURM_STATE, else slurm.json beside the bin dir):
{"jobs": {id: {...}}, "next_id": N, "down": false, "accounting": true, "sbatch_error": null,
"scancel_fails": N (the next N scancels time out, cancelling nothing), "warn": "..." (every
command that answers says this on stderr first, as Slurm does of a questionable config)}.
Accounts, when a test sets them: "partitions" {name: {"default": bool, "allow_accounts": "a,b"}}
and "accounts" (the user's, the first their default): sbatch then refuses a job whose account
(--account, else the default) is not the user's or not admitted by its partition, as Slurm does.
Every call is appended to "calls" (argv and, for sbatch, the environment), so tests count
scheduler queries and see exactly what was submitted. Only the options the helper uses are
understood; anything else fails loudly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "SUSPENDED"}
FIELDS = {
    "i": "id",
    "j": "name",
    "T": "state",
    "r": "reason",
    "N": "node",
    "S": "start",
    "M": "elapsed",
    "l": "time_limit",
    "b": "gres",
    "k": "comment",
}


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"jobs": {}, "next_id": 100}


LONG_FIELDS = {
    "JobID": "id",
    "State": "state",
    "NodeList": "node",
    "TimeUsed": "elapsed",
    "TimeLimit": "time_limit",
    "Reason": "reason",
    "tres-alloc": "tres",
    "Comment": "comment",
    "Name": "name",
}


def long_line(spec: str, job: dict) -> str:
    """squeue -O 'Field:|,Field:|': each field followed by its suffix ('|')."""
    out = ""
    for item in spec.split(","):
        name, _, suffix = item.partition(":")
        out += str(job.get(LONG_FIELDS[name], "")) + suffix
    return out


def fmt_line(fmt: str, job: dict) -> str:
    out, i = "", 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            key = FIELDS[fmt[i + 1]]
            out += str(job.get(key, "N/A" if key in ("start", "gres") else ""))
            i += 2
        else:
            out += fmt[i]
            i += 1
    return out


def opts(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """-x VALUE / --long=VALUE / flags -> dict; the rest positional."""
    found: dict[str, str] = {}
    rest: list[str] = []
    flags = {"-h", "--parsable", "-P", "-n_", "-X", "--noheader"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            found[k] = v
        elif a in flags or (a == "-n" and sys.argv[0].endswith(("sacct", "sstat"))):
            found[a] = "1"
        elif a.startswith("-") and i + 1 < len(argv):
            found[a] = argv[i + 1]
            i += 1
        else:
            rest.append(a)
        i += 1
    return found, rest


def partitions(state: dict) -> dict[str, dict]:
    return state.get("partitions") or {"debug": {"default": True}, "long": {}}


def refused_account(state: dict, o: dict[str, str]) -> bool:
    """The job's account is not the user's, or its partition does not admit it."""
    if "accounts" not in state:
        return False
    parts = partitions(state)
    script: dict[str, str] = {}  # the job script's #SBATCH --KEY=VALUE lines
    with contextlib.suppress(OSError, IndexError):
        for line in Path(sys.argv[-1]).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                break  # sbatch reads #SBATCH lines up to the first command
            if line.startswith("#SBATCH --") and "=" in line:
                key, value = line[len("#SBATCH ") :].split("=", 1)
                script[key] = value
    default = next((p for p, spec in parts.items() if spec.get("default")), "")
    part = o.get("--partition") or o.get("-p") or script.get("--partition") or default
    account = o.get("--account") or o.get("-A") or script.get("--account") or state["accounts"][0]
    allowed = parts.get(part, {}).get("allow_accounts", "ALL").split(",")
    return account not in state["accounts"] or (allowed != ["ALL"] and account not in allowed)


def main() -> int:
    name = Path(sys.argv[0]).name
    # sbatch runs under `env -i`: then the state is found beside the bin dir of the fakes.
    path = Path(
        os.environ.get("FAKE_SLURM_STATE") or Path(sys.argv[0]).parent.parent / "slurm.json"
    )
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load(path)
        call: dict = {"cmd": name, "argv": sys.argv[1:]}
        if name == "sbatch":
            call["env"] = dict(os.environ)
        state.setdefault("calls", []).append(call)
        rc = run(name, state)
        path.write_text(json.dumps(state))
    return rc


def run(name: str, state: dict) -> int:
    if state.get("down") and name in ("squeue", "scontrol", "sbatch", "scancel", "sinfo"):
        print(
            f"{name}: error: Unable to contact slurm controller (connect failure)", file=sys.stderr
        )
        return 1
    if state.get("warn"):
        print(f"{name}: warning: {state['warn']}", file=sys.stderr)
    o, rest = opts(sys.argv[1:])
    jobs = state["jobs"]
    if name == "sbatch":
        if state.get("sbatch_error"):
            print(f"sbatch: error: {state['sbatch_error']}", file=sys.stderr)
            return 1
        if refused_account(state, o):
            why = "Invalid account or account/partition combination specified"
            print(f"sbatch: error: Batch job submission failed: {why}", file=sys.stderr)
            return 1
        job_id = str(state["next_id"])
        state["next_id"] += 1
        jobs[job_id] = {
            "id": job_id,
            "name": o.get("--job-name", rest[-1] if rest else "sbatch"),
            "comment": o.get("--comment", ""),
            "state": state.get("initial_state", "PENDING"),
            "reason": state.get("initial_reason", "None"),
            "node": "",
            "start": "N/A",
            "user": os.environ.get("USER", ""),
            "script": rest[-1] if rest else "",
        }
        print(job_id)
        return 0
    if name == "squeue":
        selected = list(jobs.values())
        if "-j" in o:
            ids = o["-j"].split(",")
            unknown = [i for i in ids if i not in jobs]
            if unknown and len(ids) == 1:
                print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
                return 1
            selected = [j for j in selected if j["id"] in ids]
        if "-u" in o:
            selected = [j for j in selected if j.get("user") == o["-u"]]
        if "-n" in o:
            selected = [j for j in selected if j["name"] == o["-n"]]
        if o.get("-t") != "all":
            selected = [j for j in selected if j["state"] in ACTIVE]
        for job in selected:
            print(long_line(o["-O"], job) if "-O" in o else fmt_line(o.get("-o", "%i"), job))
        return 0
    if name == "scontrol" and sys.argv[1:3] == ["-o", "show"] and sys.argv[3] == "partition":
        wanted = sys.argv[4:5]
        parts = partitions(state)
        if wanted and wanted[0] not in parts:
            print(f"Partition {wanted[0]} not found", file=sys.stderr)
            return 1
        for part, spec in parts.items():
            if not wanted or part == wanted[0]:
                print(
                    f"PartitionName={part} AllowGroups=ALL "
                    f"AllowAccounts={spec.get('allow_accounts', 'ALL')} AllowQos=ALL "
                    f"AllocNodes=ALL Default={'YES' if spec.get('default') else 'NO'} QoS=N/A "
                    "MaxTime=00:30:00 State=UP"
                )
        return 0
    if name == "sacctmgr":
        # sacctmgr -n -P show user NAME withassoc format=defaultaccount,account
        if not state.get("accounting", True):
            print("sacctmgr: error: Problem talking to the database", file=sys.stderr)
            return 1
        accounts = state.get("accounts", [])
        for account in accounts:
            print(f"{accounts[0]}|{account}")
        return 0
    if name == "scontrol":
        # scontrol --local -o show job ID: one line of Key=Value (Reason may hold spaces)
        if state.get("old_scontrol"):
            print("scontrol: unrecognized option '--local'", file=sys.stderr)
            return 1
        if sys.argv[1:4] != ["--local", "-o", "show"] or sys.argv[4] != "job":
            print(f"fake_slurm: scontrol {sys.argv[1:]} is not faked", file=sys.stderr)
            return 2
        job = jobs.get(sys.argv[5])
        if job is None:
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            return 1
        start = job.get("start", "N/A")
        print(
            f"JobId={job['id']} JobName={job['name']} UserId={job.get('user')}(1000) "
            f"JobState={job['state']} Reason={job.get('reason', 'None')} Dependency=(null) "
            f"SubmitTime=2026-12-01T00:00:00 StartTime={'Unknown' if start == 'N/A' else start} "
            f"Partition=debug ReqNodeList=(null) NodeList={job.get('node') or '(null)'} "
            f"Comment={job.get('comment', '')}"
        )
        return 0
    if name == "scancel":
        if state.get("scancel_fails", 0) > 0:  # a controller too busy to answer, this once
            state["scancel_fails"] -= 1
            print("scancel: error: Socket timed out on send/recv operation", file=sys.stderr)
            return 1
        # As Slurm 22.05: a job that is gone is named on stderr, and the status stays 0.
        for job_id in rest:
            if job_id in jobs and jobs[job_id]["state"] in ACTIVE:
                jobs[job_id]["state"] = state.get("cancel_to", "CANCELLED")
                jobs[job_id]["by"] = os.getuid()
            elif job_id in jobs:
                why = "Job/step already completing or completed"
                print(f"scancel: error: Kill job error on job id {job_id}: {why}", file=sys.stderr)
            elif not job_id.startswith("-"):
                why = "Invalid job id specified"
                print(f"scancel: error: Kill job error on job id {job_id}: {why}", file=sys.stderr)
        return 0
    if name == "sacct":
        if not state.get("accounting", True):
            print("sacct: error: Slurm accounting storage is disabled", file=sys.stderr)
            return 1
        job = jobs.get(o.get("-j", ""))
        if job and job["state"] not in ACTIVE:
            st = job["state"]
            if st == "CANCELLED" and "by" in job:
                st = f"CANCELLED by {job['by']}"
            print(f"{st}|{job.get('exit_code', '0:0')}|{job.get('reason', 'None')}")
        return 0
    if name == "sinfo":
        print("debug*|30:00|10:00|up\nlong|1-00:00:00|1:00:00|up")
        return 0
    if name == "sstat" and o.get("-o") == "JobID,TRESUsageInTot,TRESUsageInMax":
        for step in o["-j"].split(","):
            job = jobs.get(step.removesuffix(".batch"), {})
            if job.get("state") != "RUNNING" or "use" not in job:
                print(f"sstat: error: StepId={step} not found running.", file=sys.stderr)
                continue
            use = job["use"]
            gpu = f",gres/gpuutil={use['gpuutil']}" if use.get("gpuutil") else ""
            tot = f"cpu={use['cpu']},energy=0,fs/disk=0,mem={use['rss']},pages=0{gpu}"
            print(f"{step}|{tot}|cpu={use['cpu']},mem={use['peak']}")
        return 0
    print(f"fake_slurm: {name} is not faked", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
