"""The ``tastemap`` command as a script for ``spark-submit`` (which runs a file, not a console script).

    spark-submit --master yarn --deploy-mode client \\
        --archives tastemap-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python \\
        "$(python -c 'import tastemap.runtime.spark.main as m; print(m.__file__)')" \\
        profile events.parquet catalog.csv --out profiles/ --engine spark

Under spark-submit, the master and the configuration come from spark-submit; ``--master`` of
the tastemap command is ignored.
"""

from tastemap.cli import main

if __name__ == "__main__":
    main()
