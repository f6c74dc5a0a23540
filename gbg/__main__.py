from gbg.cli import main

main()
