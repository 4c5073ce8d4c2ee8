complete -c lsepoch -o fmt -d 'Output format: text (MultiSite\'s listing) or json (for scripts; a "version" field gives the shape\'s version)' -r -f -a "text\t'MultiSite\'s text listing'
json\t'JSON, for scripts'"
complete -c lsepoch -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c lsepoch -s h -o help -d 'Print help (see more with \'-help\')'
complete -c lsepoch -s V -o version -d 'Print version'
