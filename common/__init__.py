"""The bottom layer: errors, the device mesh, image and file I/O, batching. Every other
package (input_pipeline, evaluation, hdd) may use it; it imports none of them."""
