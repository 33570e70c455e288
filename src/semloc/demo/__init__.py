"""The offline demo: a generated world of posts (`semloc.demo.world`) to run the pipeline on."""
