from solaris.cli import main

main()
