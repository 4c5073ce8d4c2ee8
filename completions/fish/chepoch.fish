complete -c chepoch -o replica -d 'The replica\'s root. Without it, the current directory and then its parents are searched for a replica' -r -F
complete -c chepoch -o force -d 'Change without asking for confirmation'
complete -c chepoch -s h -o help -d 'Print help (see more with \'-help\')'
complete -c chepoch -s V -o version -d 'Print version'
