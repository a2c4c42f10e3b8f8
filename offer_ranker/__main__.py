from offer_ranker.cli import main

main()
