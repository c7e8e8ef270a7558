"""The built-in stage kinds (proxpipe.stages): packer, terraform and tofu, ansible, on the stage contract in
proxpipe.api."""
