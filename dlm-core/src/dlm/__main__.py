from dlm.cli import main

main()
