"""Helpers of the store tests (docs/store.md): s3rver on 127.0.0.1 (installed by
scripts/setup-test-services), rclone configured by environment variables only, sites in their own
process groups."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from pipetest import Failure, run, start

SECRET = "loco-FAKE-secret-3f9c2a7e51d04b68"  # must appear in no file of the run folders


def s3rver_bin():
    d = os.environ.get("LOCO_TEST_SERVICES") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loco/test-services"
    p = Path(d) / "node_modules/.bin/s3rver"
    return p if p.exists() else None


class S3:
    """s3rver on 127.0.0.1 (a free port), serving the bucket 'loco' from folder."""

    def __init__(self, exe, folder):
        self.folder = folder
        folder.mkdir(parents=True)
        self.proc = subprocess.Popen([str(exe), "-d", str(folder), "-a", "127.0.0.1", "-p", "0", "--silent",
                                      "--allow-mismatched-signatures", "--configure-bucket", "loco"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line, m = "", None
        while m is None and self.proc.poll() is None and line.count("\n") < 20:
            line += self.proc.stdout.readline()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise Failure(f"s3rver did not start: {line!r}")
        self.port = int(m.group(1))

    def objects(self, prefix):
        """{key: path on disk} of the objects under prefix (s3rver keeps KEY._S3rver_object)."""
        base = self.folder / "loco"
        return {p.relative_to(base).as_posix()[:-len("._S3rver_object")]: p
                for p in base.glob(prefix + "**/*._S3rver_object")}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def checksum(bin_dir, path, env):
    return json.loads(run([bin_dir / "loco-inspect", "--checksum", "--json", path], env).stdout)["tensors_checksum"]


def site(cmd, env):
    """A site in its own process group (so kill -9 takes its tools and rclone too)."""
    return subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(p, what, code=0, timeout=240):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise Failure(f"{what} did not finish in {timeout} s\n{err[-3000:]}")
    if p.returncode != code:
        raise Failure(f"{what}: exit {p.returncode}, expected {code}\n{err[-3000:]}")
    return err


def kill9(p):
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate()


def wait_for(cond, what, timeout=120):
    t = time.time()
    while not cond():
        if time.time() - t > timeout:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.05)


def s3_env(env, work, s3):
    """The environment of every site: rclone's remote 'loco' on s3, no config file, HOME in work."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    return dict(env, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                RCLONE_CONFIG=str(home / "no-rclone.conf"),
                RCLONE_CONFIG_LOCO_TYPE="s3", RCLONE_CONFIG_LOCO_PROVIDER="Other",
                RCLONE_CONFIG_LOCO_ENDPOINT=f"http://127.0.0.1:{s3.port}",
                RCLONE_CONFIG_LOCO_ACCESS_KEY_ID="S3RVER", RCLONE_CONFIG_LOCO_SECRET_ACCESS_KEY=SECRET)


def no_secret(work):
    """The secret is in no file of any run folder (commands.log, config.txt, logs, metrics, Slurm),
    and no rclone config file was written."""
    home = work / "home"
    for f in work.rglob("*"):
        top = f.relative_to(work).parts[0]
        if f.is_file() and top not in ("s3", "home"):
            if SECRET.encode() in f.read_bytes():
                raise Failure(f"the secret key is in {f}")
    if (home / "no-rclone.conf").exists() or any(home.rglob("rclone.conf")):
        raise Failure("an rclone config file was written")


def store_main(name, doc, default_work, tests):
    """A store test's main: s3rver started in the work folder, tests(bin_dir, work, env, s3) run
    with the sites' environment, no secret left behind; fails (nothing skipped) without s3rver."""
    bin_dir, work, env, _ = start(doc, default_work)
    exe = s3rver_bin()
    if exe is None:
        print(f"{name}: FAIL: s3rver is not installed (scripts/setup-test-services installs it)")
        return 1
    s3 = S3(exe, work / "s3")
    try:
        tests(bin_dir, work, s3_env(env, work, s3), s3)
        no_secret(work)
    finally:
        s3.stop()
    print(f"{name}: all checks passed")
    return 0
