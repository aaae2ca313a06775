mod lint_example;
