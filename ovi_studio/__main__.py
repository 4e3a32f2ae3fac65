from ovi_studio.cli import main

main()
