complete -c chreplica -o mirror -d 'Make this replica a mirror of member UPSTREAM (by name or replica id)' -r
complete -c chreplica -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c chreplica -o nomirror -d 'Make this replica an ordinary member again'
complete -c chreplica -s h -o help -d 'Print help (see more with \'-help\')'
complete -c chreplica -s V -o version -d 'Print version'
