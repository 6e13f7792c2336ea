# localstack/session.sh — sourced by `make test` and `make demo` (bash).
#
# session_up LOG NAME:PORT...  starts the AWS emulators (localstack/up) and
#     the named throw-away clusters (localstack/pg-up), exports what they
#     print, and notes which of them this run started: one that already
#     answers on its port is reused. Their progress goes to LOG ("" for
#     stderr), and its tail to stderr if one fails to start.
# session_down  stops what session_up started, unless PGFERRY_KEEP=1, and
#     prints one line saying what it stopped and what is left running (and
#     that `make clean` stops it). Use it as the EXIT trap, so that a failed
#     run frees its ports too; it keeps the run's exit status.
#
# Stopping only what the run started leaves services that others use (a
# test run beside a demo, say) alone, and frees the ports for the next
# project when this run was the one that needed them.

_session_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_session_log=/dev/stderr
_session_emulators=reused # started | reused | partly
_session_started=()       # clusters this run started
_session_reused=()        # clusters that were already running

_session_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _session_run WHAT CMD...: run CMD with stderr to the log, evaluate its
# export lines, and fail naming WHAT (with the log's tail) if it fails.
_session_run() {
	local what=$1 out
	shift
	if ! out="$("$@" 2>>"$_session_log")"; then
		printf 'error: %s did not start' "$what" >&2
		if [[ "$_session_log" != /dev/stderr ]]; then
			printf '; last lines of %s:\n' "$_session_log" >&2
			tail -n 15 "$_session_log" >&2
		else
			printf '\n' >&2
		fi
		return 1
	fi
	eval "$out"
}

session_up() {
	_session_log=${1:-/dev/stderr}
	shift
	local sqs=${PGFERRY_SQS_PORT:-4566} ddb=${PGFERRY_DDB_PORT:-4567} rs=${PGFERRY_REDSHIFT_PORT:-4568} n=0 spec name port
	_session_port_open "$sqs" && n=$((n + 1))
	_session_port_open "$ddb" && n=$((n + 1))
	_session_port_open "$rs" && n=$((n + 1))
	case $n in
	0) _session_emulators=started ;;
	3) _session_emulators=reused ;;
	*) _session_emulators=partly ;;
	esac
	_session_run "the AWS emulation (localstack/up)" "$_session_dir/up" || return 1
	for spec in "$@"; do
		name=${spec%%:*} port=${spec##*:}
		if _session_port_open "$port"; then
			_session_reused+=("$name")
		else
			_session_started+=("$name")
		fi
		_session_run "PostgreSQL cluster $name (localstack/pg-up)" "$_session_dir/pg-up" "$name" "$port" || return 1
	done
}

# _session_list A B C prints "A, B and C".
_session_list() {
	local s="" i
	for ((i = 1; i <= $#; i++)); do
		if ((i == 1)); then
			s=${!i}
		elif ((i == $#)); then
			s+=" and ${!i}"
		else
			s+=", ${!i}"
		fi
	done
	printf '%s' "$s"
}

session_down() {
	local rc=$? stopped=() left=() name keep=${PGFERRY_KEEP:-0}
	for name in "${_session_started[@]}"; do
		if [[ $keep != 1 ]] && "$_session_dir/pg-down" "$name" 2>>"$_session_log"; then
			stopped+=("cluster $name")
		else
			left+=("cluster $name")
		fi
	done
	for name in "${_session_reused[@]}"; do
		left+=("cluster $name")
	done
	# Emulators this run found partly running are left to make clean:
	# localstack/down would stop the one it did not start too.
	if [[ $_session_emulators == started && $keep != 1 ]] && "$_session_dir/down" 2>>"$_session_log"; then
		stopped+=("the AWS emulators")
	else
		left+=("the AWS emulators")
	fi
	local msg=""
	((${#stopped[@]} == 0)) || msg="stopped $(_session_list "${stopped[@]}"), which this run started"
	if ((${#left[@]} > 0)); then
		[[ -z "$msg" ]] || msg+="; "
		msg+="still running: $(_session_list "${left[@]}") (\`make clean\` stops them)"
	fi
	printf 'services: %s\n' "$msg" >&2
	return "$rc"
}
