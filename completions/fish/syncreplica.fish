# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_syncreplica_global_optspecs
    string join \n
end

function __fish_syncreplica_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s -i (__fish_syncreplica_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_syncreplica_using_subcommand
    set -l cmd (__fish_syncreplica_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c syncreplica -n "__fish_syncreplica_needs_command" -f -a "-status" -d 'List local changes not yet recorded, like `git status`, without recording them'
complete -c syncreplica -n "__fish_syncreplica_needs_command" -f -a "-record" -d 'Scan the tree and record every local change in the operation log'
complete -c syncreplica -n "__fish_syncreplica_needs_command" -f -a "-scrub" -d 'Delete from the operation log what every member confirmed holding and is older than oplog_keep_days, and say what went (each -export does it too)'
complete -c syncreplica -n "__fish_syncreplica_needs_command" -f -a "-export" -d 'Write the operations each TARGET lacks into packets (see -out)'
complete -c syncreplica -n "__fish_syncreplica_needs_command" -f -a "-import" -d 'Verify and apply the packets in PACKET_OR_DIR...'
complete -c syncreplica -n "__fish_syncreplica_needs_command" -f -a "-verify" -d 'Read every recorded file back from disk, re-hashing its content, and report what differs from what was recorded: silent damage (same size and mtime, other content: bit rot, an edit that restored the time stamp) and ordinary unrecorded changes. With a SIBLING: also compare this replica\'s recorded tree with the tree digest of that sibling\'s last packet and list the paths that differ (in a large tree, the deepest folders that digest reaches). Only reads; exits 1 when it finds damage or a difference at the same version (a digest of another version is "not comparable yet": exit 0)'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -status" -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -status" -o fmt -d 'With -status, -export and -import: output format, text or json (for scripts: one object with a "version" field instead of the listing or the summary lines; warnings and errors still go to standard error; see JSON OUTPUT in the man page)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -record" -o resendpath -d 'With -record or -export: record the state of PATH (relative to the replica root, as -status prints it) and of everything recorded below it again, as new changes, so that exports send them, content included, to every sibling: for a sibling that lacks them since an exclude was lifted there (its -status and -record name them). A sibling that changed one meanwhile sees a conflict. Repeat for several paths' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -record" -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -record" -s q -o quiet -d 'No progress line and no summary lines: only warnings and errors (on standard error), and the JSON asked for with -fmt json. The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -scrub" -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -scrub" -s q -o quiet -d 'No progress line and no summary lines: only warnings and errors (on standard error), and the JSON asked for with -fmt json. The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o out -d 'With -export: the directory that receives the packet files, under their standard names (sync_<sender>_<time>_<target>_<seq>[_<k>of<n>].zip); created if missing, once every other check has passed. Unlike MultiSite\'s -out, which takes a file-name prefix (-out /media/usb/update1), this names a folder. A folder inside the replica is refused unless the replica excludes it (its packets would be recorded and replicated as files); so is importing packets from inside it' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o pexpire -d 'When packets put into a storage bay expire if undelivered: days (7 or 7d), hours (12h), seconds (90s), a date (2026-12-01) or an RFC 3339 time (default: the storage class\'s expiry_days, 14)' -r
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o shipconf -d 'The shipping configuration to use, instead of looking in $SYNCREPLICA_SHIPPING_CONF, the user\'s config directory and /etc/syncreplica/shipping.toml' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o sclass -d 'Storage class for -ship, -fship (default: "default") and -receive (default: every class)' -r
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o maxsize -d 'Largest size of one packet file, overhead included, with an optional k, m or g suffix (at least 64k). Larger exports are split into parts, a large file spanning parts. Default: 2g' -r
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -s c -o comment -d 'Comment stored in the packets, shown by lspacket (-c TEXT, as in MultiSite)' -r
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o workdir -d 'Directory where packets are written before they are moved to -out (default: the -out directory; parts appear there complete)' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o resendpath -d 'With -record or -export: record the state of PATH (relative to the replica root, as -status prints it) and of everything recorded below it again, as new changes, so that exports send them, content included, to every sibling: for a sibling that lacks them since an exclude was lifted there (its -status and -record name them). A sibling that changed one meanwhile sees a conflict. Repeat for several paths' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o fmt -d 'With -status, -export and -import: output format, text or json (for scripts: one object with a "version" field instead of the listing or the summary lines; warnings and errors still go to standard error; see JSON OUTPUT in the man page)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o ship -d 'With -export: put the packet parts into the storage class\'s outgoing bay, each with a shipping order for its target; the next `shipping_server -poll` delivers them along the configured routes'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o fship -d 'With -export: like -ship, then deliver at once to the first hop (later hops are forwarded by the shipping servers on the way). A failed delivery stays queued for `shipping_server -poll`, and the command exits 1 (the export itself is recorded)'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o fullcontent -d 'With -export: ship the content of every change whole, even chunks the target is believed to hold already, and none as changes to chunks it holds (for a target whose import reported missing content)'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o noencrypt -d 'With -export: write the packets in the clear, readable by anyone who holds them (default: encrypted to each target\'s key, as the config\'s `encrypt = true`). Every listing of such a packet says "not encrypted"'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o ncomment -o nc -d 'No comment (MultiSite\'s -nc, -ncomment): the default'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o resend -d 'With -export: send each TARGET again, now, every change it has not confirmed (those sent since the last packet from it that had them), without waiting for resend_after. Resending is harmless: the target skips what it has. (-resendall is an old name of it.)'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -o ack -d 'With -export: write for each TARGET a small packet that carries no changes, only this replica\'s epoch row, to confirm what it received (so the target does not resend it after resend_after)'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -export" -s q -o quiet -d 'No progress line and no summary lines: only warnings and errors (on standard error), and the JSON asked for with -fmt json. The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -o shipconf -d 'The shipping configuration to use, instead of looking in $SYNCREPLICA_SHIPPING_CONF, the user\'s config directory and /etc/syncreplica/shipping.toml' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -o sclass -d 'Storage class for -ship, -fship (default: "default") and -receive (default: every class)' -r
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -o fmt -d 'With -status, -export and -import: output format, text or json (for scripts: one object with a "version" field instead of the listing or the summary lines; warnings and errors still go to standard error; see JSON OUTPUT in the man page)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -o receive -d 'With -import: import the packets waiting in the incoming bay of the storage class (-sclass; default: every class), where shipping_server puts what it receives for local replicas. Packets applied or found already applied are removed from the bay; waiting ones and other replicas\' stay'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -o remove -d 'With -import: remove packet files once applied or found already applied (files in named directories are otherwise left in place)'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -import" -s q -o quiet -d 'No progress line and no summary lines: only warnings and errors (on standard error), and the JSON asked for with -fmt json. The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c syncreplica -n "__fish_syncreplica_using_subcommand -verify" -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
