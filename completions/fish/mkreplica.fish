complete -c mkreplica -o family -d 'With -init: name of the new family' -r
complete -c mkreplica -o out -d 'With -export: the directory that receives the packet parts and the new member\'s key file; made if missing (once every check has passed). Unlike MultiSite\'s -out, which takes a file-name prefix, this names a folder: the files get their standard names in it' -r -F
complete -c mkreplica -o maxsize -d 'With -export: largest size of one packet file, with an optional k, m or g suffix (at least 64k)' -r
complete -c mkreplica -s c -o comment -d 'With -export: comment stored in the packet (-c TEXT, as in MultiSite)' -r
complete -c mkreplica -o fingerprint -d 'With -import: the SHA-256 fingerprint (64 hex digits) the packet\'s signing key must have, as printed by mkreplica -export at the sender' -r
complete -c mkreplica -o key -d 'With -import: the new member\'s key file (default: NEWNAME.key beside the packet)' -r -F
complete -c mkreplica -o exclude -d 'With -import: a path that stays local to the new member (gitignore syntax, relative to the replica root: "/hosts" at a replica of /etc); repeat for more. Paths it excludes are not written from the creation packet, and the new member\'s config.toml records it' -r
complete -c mkreplica -o replica -d 'Replica root: for -init and -import, where the new replica goes (default: the current directory); for -export, the exporting replica (default: found from the current directory up)' -r -F
complete -c mkreplica -o init -d 'Create a new replica family with NAME as its first member'
complete -c mkreplica -o export -d 'Write a replica-creation packet for a new member NAME (needs -out)'
complete -c mkreplica -o import -d 'Create a replica from a creation packet\'s parts'
complete -c mkreplica -o restore -d 'Mark this replica restored from a backup; it waits to hear from the SIBLINGs named (default: every other current member)'
complete -c mkreplica -o ncomment -o nc -d 'No comment (MultiSite\'s -nc, -ncomment): the default'
complete -c mkreplica -o manifest -d 'With -export: write a manifest, a creation packet without content (the recorded state: paths, metadata, chunk ids), for a new member made over a tree that holds the content already (-import -adopt)'
complete -c mkreplica -o adopt -d 'With -import: make the new member over the existing tree at -replica DIR (see above); with a manifest, the files it lacks are asked for'
complete -c mkreplica -o mirror -d 'With -import: make the new member a mirror of the packet\'s sender: it records no change of its own; the family\'s version always wins (see above). chreplica -nomirror makes it an ordinary member'
complete -c mkreplica -s h -o help -d 'Print help (see more with \'-help\')'
complete -c mkreplica -s V -o version -d 'Print version'
