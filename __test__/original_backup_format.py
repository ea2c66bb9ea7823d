#!/usr/bin/env python3
"""Test fixture generator: one round of a backup in the on-disk format of the
original backup.py (vbasil2000/backup-manager), written for our tests from
the description of that format in docs/design.md ("Backup folders made by
backup.py"). It is not the original program: it selects every file of `src`,
tracks those under the `track` prefixes, and leaves out the original's
pattern rules, which play no part in the format.

What it reproduces, because our adoption depends on it:
- `dst/mirror.json`: {rel: {"size", "mtime" (float seconds), "tracked"}},
  rewritten after every round, listing only what the round selected;
- an increment only when a tracked file is new, changed (size, or mtime by
  more than 1 s, against mirror.json) or deleted; named
  backup_YYYYMMDD_HHMMSS in LOCAL time; track/ and deleted/ hold hardlinks
  to the mirror's inodes;
- mirror files are overwritten IN PLACE (the existing inode is truncated and
  rewritten, as shutil.copy2 does), so an older increment's hardlink shows
  later content than its metadata says;
- files listed in the old mirror.json that are no longer selected are
  removed from the mirror only in a round that makes an increment: an
  untracked file deleted in a round without tracked changes stays in the
  mirror (stale), and later rounds never remove it (it is no longer listed);
- metadata backup_NAME.json (json indent 2, no trailing newline) with
  version "1.0", backup_type, timestamp (local, no zone), backup_name,
  file_catalog {rel: {size, mtime, category: "tracked"}} (deleted files are
  counted in the summary but never listed: the original looks them up in the
  mirror state it has already replaced) and summary
  {new_or_changed_tracked, deleted_tracked}; or, with
  "recreated": true, as backup_tool.py's `recreate` writes it (category
  "track", backup_timestamp, mtime_iso/mtime_date/backup_path per entry,
  summary.total_operations, statistics {total_files, total_size}).

Usage: original_backup_format.py JOB.json, JOB = {"src", "dst", "track":
[prefixes], "now": epoch seconds of the round, "recreated": bool}.
"""
import json
import os
import sys
from datetime import datetime


def scan(src):
    found = {}
    for root, _dirs, names in os.walk(src):
        for n in names:
            p = os.path.join(root, n)
            st = os.stat(p)
            found[os.path.relpath(p, src)] = (st.st_size, st.st_mtime)
    return found


def rewrite_in_place(src_file, dst_file):
    # Same inode if it exists: open for writing truncates it.
    os.makedirs(os.path.dirname(dst_file), exist_ok=True)
    with open(src_file, "rb") as fi, open(dst_file, "wb") as fo:
        fo.write(fi.read())
    st = os.stat(src_file)
    os.chmod(dst_file, st.st_mode & 0o7777)
    os.utime(dst_file, ns=(st.st_atime_ns, st.st_mtime_ns))


def link(target, at):
    os.makedirs(os.path.dirname(at), exist_ok=True)
    os.link(target, at)


def differs(a_size, a_mtime, b_size, b_mtime):
    return a_size != b_size or abs(a_mtime - b_mtime) > 1.0


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    src, dst = job["src"], job["dst"]
    mirror = os.path.join(dst, "mirror")
    state_file = os.path.join(dst, "mirror.json")
    os.makedirs(mirror, exist_ok=True)
    state = {}
    if os.path.exists(state_file):
        with open(state_file, encoding="utf-8") as f:
            state = json.load(f)

    files = scan(src)
    tracked = {r for r in files if any(r == p or r.startswith(p + "/") for p in job["track"])}
    before = {r for r, e in state.items() if e.get("tracked")}
    deleted = before - files.keys()
    new = tracked - before
    changed = {
        r for r in tracked & before
        if differs(state[r]["size"], state[r]["mtime"], files[r][0], files[r][1])
    }

    def mirror_stale(rel):
        m = os.path.join(mirror, rel)
        if not os.path.exists(m):
            return True
        st = os.stat(m)
        return differs(st.st_size, st.st_mtime, files[rel][0], files[rel][1])

    now = datetime.fromtimestamp(job["now"])
    name = "backup_" + now.strftime("%Y%m%d_%H%M%S")
    inc = os.path.join(dst, name)
    made = bool(new or changed or deleted)
    if made:
        os.makedirs(inc, exist_ok=True)
        for rel in deleted:
            m = os.path.join(mirror, rel)
            if os.path.exists(m):
                link(m, os.path.join(inc, "deleted", rel))
        for rel in list(state):
            m = os.path.join(mirror, rel)
            if os.path.exists(m) and rel not in files:
                os.unlink(m)
    for rel in files:
        if mirror_stale(rel):
            rewrite_in_place(os.path.join(src, rel), os.path.join(mirror, rel))
    if made:
        for rel in new | changed:
            link(os.path.join(mirror, rel), os.path.join(inc, "track", rel))

    new_state = {r: {"size": s, "mtime": m, "tracked": r in tracked} for r, (s, m) in files.items()}
    with open(state_file + ".tmp", "w", encoding="utf-8") as f:
        json.dump(new_state, f, indent=2, ensure_ascii=False)
    os.replace(state_file + ".tmp", state_file)

    if not made:
        return
    if job.get("recreated"):
        catalog, total_size = {}, 0
        for cat in ("track", "deleted"):
            base = os.path.join(inc, cat)
            for root, _dirs, names in os.walk(base):
                for n in names:
                    p = os.path.join(root, n)
                    rel = os.path.relpath(p, base)
                    st = os.stat(p)
                    catalog[rel] = {
                        "size": st.st_size,
                        "mtime": st.st_mtime,
                        "mtime_iso": datetime.fromtimestamp(st.st_mtime).isoformat(),
                        "mtime_date": datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d"),
                        "category": cat,
                        "backup_path": f"{cat}/{rel}",
                    }
                    total_size += st.st_size
        n_track = sum(1 for e in catalog.values() if e["category"] == "track")
        n_deleted = len(catalog) - n_track
        meta = {
            "version": "1.0",
            "backup_type": "incremental",
            "backup_timestamp": now.isoformat(),
            "backup_name": name,
            "backup_path": inc,
            "file_catalog": catalog,
            "summary": {
                "new_or_changed_tracked": n_track,
                "deleted_tracked": n_deleted,
                "total_operations": n_track + n_deleted,
            },
            "statistics": {"total_files": len(catalog), "total_size": total_size},
            "recreated": True,
            "recreated_at": now.isoformat(),
        }
    else:
        catalog = {}
        for rel in new | changed:
            catalog[rel] = {"size": files[rel][0], "mtime": files[rel][1], "category": "tracked"}
        # The original looks deleted files up in the mirror state it has
        # already replaced with this round's, so they are never listed
        # (only counted in deleted_tracked; deleted/ holds them).
        for rel in deleted:
            if rel in new_state:
                catalog[rel] = {"size": new_state[rel]["size"], "mtime": new_state[rel]["mtime"], "category": "deleted"}
        meta = {
            "version": "1.0",
            "backup_type": "incremental",
            "timestamp": now.isoformat(),
            "backup_name": name,
            "file_catalog": catalog,
            "summary": {
                "new_or_changed_tracked": len(new) + len(changed),
                "deleted_tracked": len(deleted),
            },
        }
    with open(os.path.join(inc, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
