"""What ShopStream changes in Faust, aiokafka and mode, in one place (see runtime/README.md).

Every subclass or override of a library's internals lives here, under the domain layers:
``app.py`` names these classes (by import or by Faust's string paths), and the layers above
use them without knowing what they patch. ``tests/unit/test_runtime_versions.py`` fails when
the installed libraries are not the versions these patches were checked against.
"""
