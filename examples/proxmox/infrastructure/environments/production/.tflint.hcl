# tflint is the lint gate of the production environment (the pipeline runs `tflint --init` and
# `tflint` in this folder before every plan). The terraform ruleset is bundled with tflint, so
# --init downloads nothing.
plugin "terraform" {
  enabled = true
  preset  = "recommended"
}
