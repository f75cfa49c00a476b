"""A course without glue code: assignments built for learners and graded on the course platforms.

    npformer course build linear layernorm attention --out DIR   stubs, notebooks, answers, bundles
    npformer course grade DIR/assignment.json --submission folder --report junit

The grading is npformer.exercise's (this package imports it; it never imports this one):

    platforms.py   a report as Gradescope, PrairieLearn and JUnit read it: a test per graded part
    autograder.py  an assignment's submission graded: every exercise of it, one results file
    build.py       the assignment written out: student/, solution/, Gradescope's zip, a PrairieLearn question
    notebooks.py   an exercise as a Jupyter notebook: the task, the stub, a cell that grades it
    wheel.py       npformer's own wheel, made from the running package, for the bundles to install
"""
