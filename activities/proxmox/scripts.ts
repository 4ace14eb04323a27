/**
 * The shell scripts pgha runs inside a CT through `pct exec` (as `sh -c SCRIPT name args...`, the
 * values always positional parameters), and the Proxmox messages it recognises.
 */

/**
 * The environment variable that marks every process of one `pct exec` inside the CT (the command,
 * `timeout` and whatever they start inherit it), so that a cancelled command can be found and killed.
 */
export const EXEC_MARK = 'PGHA_EXEC';

/**
 * Kills every process in the CT marked `PGHA_EXEC=<id>`, and their process groups (`timeout`
 * leads one holding the command and its children). /proc only (minbase CTs lack procps), one grep
 * over every environ per pass. A few passes, so a command whose lxc-attach is still starting is
 * caught too; prints how many processes it signalled.
 */
export const KILL_SCRIPT = `id=$1 n=0 pass=0
while [ $pass -lt 10 ]; do
  pass=$((pass + 1))
  found=$(grep -lzx "${EXEC_MARK}=$id" /proc/[0-9]*/environ 2>/dev/null)
  if [ -z "$found" ]; then
    { [ $n -gt 0 ] || [ $pass -ge 3 ]; } && break
  else
    for f in $found; do
      p=\${f#/proc/} && p=\${p%/environ}
      kill -9 -"$p" 2>/dev/null
      kill -9 "$p" 2>/dev/null && n=$((n + 1))
    done
  fi
  sleep 0.2
done
echo "$n"`;

/** How long the kill of a given-up command may take (it runs over a fresh channel). */
export const KILL_TIMEOUT_MS = 15_000;

export const UNKNOWN_CT = /Configuration file 'nodes\/[^/]+\/lxc\/(\d+)\.conf' does not exist/;
export const NOT_RUNNING = /^CT (\d+) not running$/m;

/** Writes stdin to a temp file next to the destination, sets owner and mode, renames it into place. */
export const PUSH_SCRIPT = `set -e
dest=$1 mode=$2 owner=$3 group=$4 sha=$5
if [ -f "$dest" ] && [ "$(sha256sum <"$dest" | cut -d' ' -f1)" = "$sha" ]; then
  have=$(stat -c '%a %U %G|%a %u %g' -- "$dest")
  case "|$have|" in *"|$mode $owner $group|"*) cat >/dev/null; echo unchanged; exit 0 ;; esac
fi
dir=$(dirname -- "$dest")
[ -d "$dir" ] || { echo "directory $dir does not exist" >&2; exit 2; }
tmp=$(mktemp "$dir/.pgha-push.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"
chown -- "$owner:$group" "$tmp"
chmod -- "$mode" "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
echo changed`;
