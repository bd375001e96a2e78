"""Ways a video enters hybridvideo from outside: resumable uploads first."""
