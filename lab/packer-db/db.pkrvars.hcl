# lab-graph's second template: the lab's golden image under another name (its own folder, so that its edits
# rebuild it alone).
template_name = "lab-db"
