"""A trainee's Exchange Management Shell over a running lab (`labsim shell`).

Layers, bottom up: `lexer` (text -> tokens), `parser` (tokens -> AST of plain dataclasses),
`evaluator` (AST -> objects, the pipeline and PowerShell's own cmdlets: Where-Object,
Select-Object, Sort-Object, Measure-Object, Format-Table/-List), `views` (how Exchange's cmdlets
print their objects), `cmdlets` (the lab's Get-/Set-/Retry-... cmdlets over a running
`engine.runtime.LabRuntime`), `session` (the lab on a virtual clock, pending configuration,
exercises, transcript). The lexer, parser, evaluator and views know nothing of the lab.
"""
