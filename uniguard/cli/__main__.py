from uniguard.cli import main

main()
