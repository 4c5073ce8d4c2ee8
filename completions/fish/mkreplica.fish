# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mkreplica_global_optspecs
    string join \n
end

function __fish_mkreplica_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s -i (__fish_mkreplica_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mkreplica_using_subcommand
    set -l cmd (__fish_mkreplica_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mkreplica -n "__fish_mkreplica_needs_command" -f -a "-init" -d 'Create a new replica family with NAME as its first member'
complete -c mkreplica -n "__fish_mkreplica_needs_command" -f -a "-export" -d 'Write a replica-creation packet for a new member NAME (needs -out)'
complete -c mkreplica -n "__fish_mkreplica_needs_command" -f -a "-import" -d 'Create a replica from a creation packet\'s parts'
complete -c mkreplica -n "__fish_mkreplica_needs_command" -f -a "-restore" -d 'Mark this replica restored from a backup; it waits to hear from the SIBLINGs named (default: every other current member)'
complete -c mkreplica -n "__fish_mkreplica_needs_command" -f -a "-rekey" -d 'Replace this replica\'s signing and encryption keys with new ones, announced to the family by a change signed with the old key (see above)'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -init" -o family -d 'With -init: name of the new family' -r
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -init" -o replica -d 'Replica root: for -init and -import, where the new replica goes (default: the current directory); for -export, the exporting replica (default: found from the current directory up)' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -init" -s q -o quiet -d 'No progress line and no summary lines, only warnings and errors (on standard error). The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o out -d 'With -export: the directory that receives the packet parts (the new member\'s keys travel inside them, or in the -keyout file); made if missing (once every check has passed). Unlike MultiSite\'s -out, which takes a file-name prefix, this names a folder: the files get their standard names in it' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o maxsize -d 'With -export: largest size of one packet file, with an optional k, m or g suffix (at least 64k)' -r
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -s c -o comment -d 'With -export: comment stored in the packet (-c TEXT, as in MultiSite)' -r
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o keyout -d 'With -export: write the new member\'s secret keys to FILE (made with mode 0600; never overwritten) instead of inside the packet, to be carried by another route; the packet is then encrypted to the new member\'s key and needs no passphrase' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o passphrase-file -d 'With -export or -import: read the creation packet\'s passphrase from the first line of FILE instead of asking on the terminal. A new one (-export) has at least 8 characters; -import takes whatever opens the packet. Not with -keyout, whose packet is encrypted to the key file instead' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o replica -d 'Replica root: for -init and -import, where the new replica goes (default: the current directory); for -export, the exporting replica (default: found from the current directory up)' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o ncomment -o nc -d 'No comment (MultiSite\'s -nc, -ncomment): the default'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -o manifest -d 'With -export: write a manifest, a creation packet without content (the recorded state: paths, metadata, chunk ids), for a new member made over a tree that holds the content already (-import -adopt)'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -export" -s q -o quiet -d 'No progress line and no summary lines, only warnings and errors (on standard error). The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o fingerprint -d 'With -import: the SHA-256 fingerprint (64 hex digits) the packet\'s signing key must have, as printed by mkreplica -export at the sender' -r
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o passphrase-file -d 'With -export or -import: read the creation packet\'s passphrase from the first line of FILE instead of asking on the terminal. A new one (-export) has at least 8 characters; -import takes whatever opens the packet. Not with -keyout, whose packet is encrypted to the key file instead' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o key -d 'With -import: the new member\'s key file, written by mkreplica -export -keyout FILE, for a packet made with -keyout (default: NEWNAME.key beside the packet)' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o exclude -d 'With -import: a path that stays local to the new member (gitignore syntax, relative to the replica root: "/hosts" at a replica of /etc); repeat for more. Paths it excludes are not written from the creation packet, and the new member\'s config.toml records it' -r
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o preserve -d 'With -import: what the new member keeps beyond content, mode and times, a comma-separated list out of owner, group, acls, xattrs, hardlinks, devices, specials (config.toml\'s preserve, written before anything is; default: what the running user can apply)' -r
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o replica -d 'Replica root: for -init and -import, where the new replica goes (default: the current directory); for -export, the exporting replica (default: found from the current directory up)' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o fmt -d 'With -import and -rekey: output format, text or json (for scripts: one object with a "version" field instead of the summary lines; see JSON OUTPUT in the man page)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o adopt -d 'With -import: make the new member over the existing tree at -replica DIR (see above); with a manifest, the files it lacks are asked for'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o mirror -d 'With -import: make the new member a mirror of the packet\'s sender: it records no change of its own; the family\'s version always wins (see above). chreplica -nomirror makes it an ordinary member'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -o numeric-ids -d 'With -import: owners and ACL entries by number only (config.toml\'s numeric_ids = true, written before anything is), for a site whose user and group names map to other ids'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -import" -s q -o quiet -d 'No progress line and no summary lines, only warnings and errors (on standard error). The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -restore" -o replica -d 'Replica root: for -init and -import, where the new replica goes (default: the current directory); for -export, the exporting replica (default: found from the current directory up)' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -restore" -s q -o quiet -d 'No progress line and no summary lines, only warnings and errors (on standard error). The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -rekey" -o replica -d 'Replica root: for -init and -import, where the new replica goes (default: the current directory); for -export, the exporting replica (default: found from the current directory up)' -r -F
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -rekey" -o fmt -d 'With -import and -rekey: output format, text or json (for scripts: one object with a "version" field instead of the summary lines; see JSON OUTPUT in the man page)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c mkreplica -n "__fish_mkreplica_using_subcommand -rekey" -s q -o quiet -d 'No progress line and no summary lines, only warnings and errors (on standard error). The progress line (bytes, percentage, rate, time left) is shown only when standard error is a terminal, once a step has run for a second'
