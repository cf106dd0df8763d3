"""Adapters for models that ship as their authors' own packages: files to copy, not imported by the toolkit.

Each is a short class implementing the adapter interface of `lovr_common.encoders` (`TextEncoder` and
`VideoEncoder`) around the authors' API, importing their package only when built:

    from lovr_metric.adapters.languagebind import LanguageBindAdapter
    evaluate_model(EvaluateConfig(dataset="./lovr", model="languagebind-video", output="runs/lb"),
                   encoder=LanguageBindAdapter())

They are not run with weights here (the packages are not installed); a missing package is an `ImportError` naming
what to install.
"""
