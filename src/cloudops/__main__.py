from cloudops.cli.main import main

main()
