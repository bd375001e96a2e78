from hybridvideo.cli.main import main

main()
